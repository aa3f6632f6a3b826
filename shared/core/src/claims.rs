//! The chunks of a file shared out among the threads that process it: each thread claims
//! the chunks of its own run front to back, and a thread whose run is done takes the back
//! half of the longest run left, so a slow (or starved) thread holds no one up.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Chunk `k` spans `starts[k]..starts[k + 1]` of the file (the last one: to its end).
pub(crate) struct Claims {
    starts: Vec<u64>,
    runs: Mutex<Vec<Run>>,
}

/// The chunks `next..end` a thread has yet to claim, following the one it is processing.
#[derive(Clone, Copy, Debug)]
struct Run {
    next: usize,
    end: usize,
}

impl Run {
    fn left(&self) -> usize {
        self.end.saturating_sub(self.next)
    }
}

impl Claims {
    /// The chunks starting at `starts` (0 first, increasing), in `threads` runs of about
    /// equal length; chunk 0 is thread 0's, claimed.
    pub(crate) fn new(starts: Vec<u64>, threads: usize) -> Self {
        let (n, threads) = (starts.len(), threads.max(1));
        // Chunk 0 is in no run: it is thread 0's from the start.
        let runs = (0..threads)
            .map(|t| Run {
                next: (n * t / threads).max(1),
                end: (n * (t + 1) / threads).max(1),
            })
            .collect();
        Claims {
            starts,
            runs: Mutex::new(runs),
        }
    }

    /// File offset where chunk `k` starts.
    pub(crate) fn start(&self, k: usize) -> u64 {
        self.starts[k]
    }

    /// File offset where chunk `k` ends (`u64::MAX`: at the end of the file).
    pub(crate) fn end(&self, k: usize) -> u64 {
        self.starts.get(k + 1).copied().unwrap_or(u64::MAX)
    }

    /// Claims for thread `t` the chunk that follows the one it processes (or its run's
    /// first, before it has any), if that chunk is still in its run.
    pub(crate) fn next(&self, t: usize) -> Option<usize> {
        let mut runs = self.runs();
        let run = runs.get_mut(t)?;
        (run.left() > 0).then(|| {
            run.next += 1;
            run.next - 1
        })
    }

    /// Claims for thread `t` the back half of the longest run with two chunks or more
    /// left, which becomes `t`'s run; returns its first chunk (now `t`'s to process).
    pub(crate) fn steal(&self, t: usize) -> Option<usize> {
        let mut runs = self.runs();
        if t >= runs.len() {
            return None;
        }
        let (victim, left) = (runs.iter().enumerate())
            .map(|(v, run)| (v, run.left()))
            .max_by_key(|&(_, left)| left)?;
        // A stolen stretch costs a table of its own, merged at the end: worth it only
        // when the victim has more than the chunk it is about to take left.
        if left < 2 {
            return None;
        }
        let end = runs[victim].end;
        let first = end - left.div_ceil(2);
        runs[victim].end = first;
        runs[t] = Run {
            next: first + 1,
            end,
        };
        Some(first)
    }

    /// The runs; a thread that panicked holding the lock left them whole (each update
    /// is a plain store), so a poisoned lock is used as it is.
    fn runs(&self) -> MutexGuard<'_, Vec<Run>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Claims chunks for thread `t` as a worker does: its run front to back, then stolen
    /// runs; returns each stretch of contiguous chunks it processed.
    fn work(claims: &Claims, t: usize, first: Option<usize>, pause: u64) -> Vec<Vec<usize>> {
        let mut stretches = Vec::new();
        let mut chunk = first.or_else(|| claims.next(t)).or_else(|| claims.steal(t));
        while let Some(k) = chunk {
            let mut stretch = vec![k];
            while let Some(k) = claims.next(t) {
                std::thread::sleep(std::time::Duration::from_micros(pause));
                stretch.push(k);
            }
            stretches.push(stretch);
            chunk = claims.steal(t);
        }
        stretches
    }

    fn contiguous(stretch: &[usize]) -> bool {
        stretch.windows(2).all(|w| w[1] == w[0] + 1)
    }

    #[test]
    fn a_lone_thread_takes_every_chunk_once() {
        let claims = Claims::new((0..32).map(|k| k * 100).collect(), 2);
        // Thread 1 never starts: thread 0 does its run, then takes halves of thread 1's
        // while there are two chunks or more, then does the rest of it as thread 1.
        let mut stretches = work(&claims, 0, Some(0), 0);
        stretches.extend(work(&claims, 1, None, 0));
        let firsts: Vec<usize> = stretches.iter().map(|s| s[0]).collect();
        assert_eq!(firsts, [0, 24, 20, 18, 17, 16]);
        let mut all: Vec<usize> = stretches.concat();
        assert!(stretches.iter().all(|s| contiguous(s)), "{stretches:?}");
        all.sort_unstable();
        assert_eq!(all, (0..32).collect::<Vec<_>>());
        assert_eq!(
            (claims.start(5), claims.end(5), claims.end(31)),
            (500, 600, u64::MAX)
        );
    }

    #[test]
    fn threads_of_unequal_speed_share_every_chunk_once() {
        for threads in [2, 3, 7] {
            let claims = Claims::new((0..200).collect(), threads);
            let stretches: Vec<Vec<Vec<usize>>> = std::thread::scope(|scope| {
                let claims = &claims;
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let first = (t == 0).then_some(0);
                        // Thread 1 is ten times slower than the others.
                        let pause = if t == 1 { 500 } else { 50 };
                        scope.spawn(move || work(claims, t, first, pause))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let all: Vec<&Vec<usize>> = stretches.iter().flatten().collect();
            assert!(all.iter().all(|s| contiguous(s)), "{all:?}");
            let mut chunks: Vec<usize> = all.iter().flat_map(|s| s.iter().copied()).collect();
            chunks.sort_unstable();
            assert_eq!(chunks, (0..200).collect::<Vec<_>>(), "{threads} threads");
            // The slow thread did much less than its equal share.
            let slow: usize = stretches[1].iter().map(Vec::len).sum();
            assert!(
                slow < 200 / threads / 2,
                "{threads} threads: slow did {slow}"
            );
        }
    }

    #[test]
    fn more_threads_than_chunks() {
        let claims = Claims::new(vec![0, 10, 20], 5);
        assert_eq!(
            (claims.next(0), claims.next(1), claims.next(2)),
            (None, None, None)
        );
        assert_eq!(claims.next(3), Some(1));
        // One chunk left, in thread 4's run: not worth a stretch of another thread's.
        assert_eq!(claims.steal(1), None);
        assert_eq!(
            (claims.next(4), claims.next(4), claims.next(3)),
            (Some(2), None, None)
        );
        assert_eq!(claims.steal(9), None);
    }
}
