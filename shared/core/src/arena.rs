//! Fixed-size records of machine words in chunks that never move: appending never copies
//! what is stored, and each page is touched once (a growing `Vec` of tens of megabytes
//! copies itself at every doubling and, under some allocators, keeps the old copies).

/// Bytes per chunk, about: large enough for few chunks (an allocator rounds each one up,
/// by 128 KiB under mimalloc), small enough not to matter for a file with a handful of
/// cells (a chunk's pages are touched only as records are added).
const CHUNK_BYTES: usize = 1 << 23;

/// Records of `stride` words, by id (ids in append order).
pub(crate) struct WordArena {
    stride: usize,
    /// log2 of the records per chunk.
    shift: u32,
    chunks: Vec<Vec<u64>>,
    len: usize,
}

impl WordArena {
    pub fn new(stride: usize) -> Self {
        let per_chunk = (CHUNK_BYTES / 8 / stride.max(1)).max(1);
        WordArena {
            stride,
            shift: per_chunk.ilog2(),
            chunks: Vec::new(),
            len: 0,
        }
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn place(&self, id: u32) -> (usize, usize) {
        let id = id as usize;
        let mask = (1 << self.shift) - 1;
        (id >> self.shift, (id & mask) * self.stride)
    }

    /// Record `id` (panics when there is none, like a slice index).
    #[inline]
    pub fn get(&self, id: u32) -> &[u64] {
        let (chunk, at) = self.place(id);
        &self.chunks[chunk][at..at + self.stride]
    }

    #[inline]
    pub fn get_mut(&mut self, id: u32) -> &mut [u64] {
        let (chunk, at) = self.place(id);
        &mut self.chunks[chunk][at..at + self.stride]
    }

    /// Appends a record that starts with `head`, zeros after it; returns its id.
    pub fn push(&mut self, head: &[u64]) -> u32 {
        let id = self.len as u32;
        let (chunk, _) = self.place(id);
        if chunk == self.chunks.len() {
            self.chunks
                .push(Vec::with_capacity(self.stride << self.shift));
        }
        let words = &mut self.chunks[chunk];
        let end = words.len() + self.stride;
        words.extend_from_slice(&head[..head.len().min(self.stride)]);
        words.resize(end, 0);
        self.len += 1;
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_their_ids_across_chunks() {
        for stride in [1, 3, 14, 200_000] {
            let mut arena = WordArena::new(stride);
            let count = 3 * (CHUNK_BYTES / 8 / stride) + 5;
            for i in 0..count as u64 {
                assert_eq!(arena.push(&[i, i * 2]), i as u32);
            }
            assert_eq!(arena.len(), count);
            for id in [0, 1, count / 2, count - 1] {
                let r = arena.get_mut(id as u32);
                assert_eq!(r.len(), stride);
                assert_eq!(r[0], id as u64);
                if stride > 1 {
                    assert_eq!(r[1], 2 * id as u64);
                }
                assert!(r[2.min(stride)..].iter().all(|&w| w == 0));
                r[stride - 1] = 7;
                assert_eq!(arena.get(id as u32)[stride - 1], 7);
            }
        }
    }
}
