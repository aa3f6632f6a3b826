//! Fixed-window cells of one aggregate while a file is processed, in a compact layout:
//! each cell is a run of machine words (its head, then its numeric accumulators inline),
//! so a row touches one or two cache lines and a new cell is one short append. The other
//! accumulators (strings, first/last, distinct, quantiles) stay `Acc`s in a side arena.
//!
//! Cells are found through their group's chain (the cell it touched last, its newest);
//! each cell links to the group's previous cell (to find an earlier window) and names its group, so the cells are
//! grouped for output in one pass over the arena, without a list per group.

use rustc_hash::FxHashMap;

use crate::arena::WordArena;
use crate::expr::Type;
use crate::metrics::{Acc, CellState, FloatSum, MetricFunc, MetricSpec, Scalar};
use crate::types::Val;

/// No cell (a group without cells, the end of a group's chain).
const NO_CELL: u32 = u32::MAX;

/// Head words of every cell.
const START: usize = 0;
const ROWS: usize = 1;
/// The group's previous cell (low 32 bits) and the group (high 32 bits).
const LINK: usize = 2;
/// [`REOPENED`] when a late row (policy `update`) touched the cell, a bit per `min` / `max`
/// slot that holds a value ([`Slot::Extreme`]), and two per float sum ([`Slot::Float`]).
const FLAGS: usize = 3;
/// The first and last event time of the cell's rows. For windows shorter than 2^32 ms,
/// one word: both as offsets from the window start (low and high 32 bits; [`NO_EVENTS`]
/// before the first row). Otherwise two words: the times themselves.
const EVENTS: usize = 4;
const NO_EVENTS: u64 = u32::MAX as u64;
const REOPENED: u64 = 1;

/// How far back a group's chain is walked to find an earlier window before the group is
/// indexed by (group, start) instead.
const MAX_WALK: usize = 8;

/// Where a group stands among its cells: its chain of cells, the newest (its head), how
/// many, and whether they were made in window order ([`FixedCells::cell`]); and the cell
/// it touched last. Rows mostly arrive in time order, so the next row of a group usually
/// lands in that cell (whose window start is in the cell, which the row updates anyway),
/// or else in a new window after all of its cells. Sixteen bytes, by group index: the
/// groups' chains share the core's cache with the cells being updated.
#[derive(Clone, Copy)]
struct Chain {
    head: u32,
    len: u32,
    /// The cell the group touched last ([`NO_CELL`] before the first).
    last: u32,
    ordered: bool,
}

impl Chain {
    const EMPTY: Chain = Chain {
        head: NO_CELL,
        len: 0,
        last: NO_CELL,
        ordered: true,
    };
}

/// Where one metric's partial lives in a cell.
#[derive(Clone, Copy, Debug)]
enum Slot {
    /// `count()`: the cell's row count (no word of its own).
    Rows,
    /// `count_if(..)`: one word.
    Count(usize),
    /// `sum` of ints: i128 (two words), then the count of values.
    SumInt(usize),
    /// `sum` (or `avg`, when `avg`) of floats: the exact sum in nano units, in one word
    /// while it fits an i64. Flag `wide` set: the sum outgrew the word and is the cell's
    /// entry in `FixedCells::wide_sums`. Flag `gaps` set: some rows had no number here,
    /// counted in `FixedCells::gaps` (the count of values is the rows less those).
    Float {
        at: usize,
        avg: bool,
        wide: u64,
        gaps: u64,
    },
    /// `min` (or `max`, when not `min`) of numbers or timestamps: the value's bits, which
    /// are the value once the slot's `has` bit is set in the cell's [`FLAGS`].
    Extreme {
        at: usize,
        has: u64,
        n: Number,
        min: bool,
    },
    /// Any other accumulator: its index among the cell's `Acc`s in the side arena.
    Other(usize),
}

/// The kind of value a `min` / `max` slot holds.
#[derive(Clone, Copy, Debug)]
enum Number {
    Int,
    Float,
    Ts,
}

impl Number {
    fn of(ty: Type) -> Option<Number> {
        match ty {
            Type::Int => Some(Number::Int),
            Type::Float => Some(Number::Float),
            Type::Ts => Some(Number::Ts),
            _ => None,
        }
    }

    /// A value's bits in this slot's kind (`None` for a value of another kind).
    fn bits(self, v: &Val<'_>) -> Option<u64> {
        match (self, v) {
            (Number::Int, Val::Int(i)) | (Number::Ts, Val::Ts(i)) => Some(*i as u64),
            (Number::Float, v) => v.as_f64().map(f64::to_bits),
            _ => None,
        }
    }

    fn order(self, a: u64, b: u64) -> std::cmp::Ordering {
        match self {
            Number::Int | Number::Ts => (a as i64).cmp(&(b as i64)),
            Number::Float => f64::from_bits(a).total_cmp(&f64::from_bits(b)),
        }
    }

    fn scalar(self, bits: u64) -> Scalar {
        match self {
            Number::Int => Scalar::Int(bits as i64),
            Number::Ts => Scalar::Ts(bits as i64),
            Number::Float => Scalar::Float(f64::from_bits(bits)),
        }
    }
}

/// The cells of a [`FixedCells`] by group ([`FixedCells::by_group`]).
pub(crate) struct CellsByGroup {
    /// Group `g`'s cells are `cells[offsets[g]..offsets[g + 1]]`.
    offsets: Vec<usize>,
    cells: Vec<u32>,
}

impl CellsByGroup {
    /// Group `g`'s cell ids, by window start ([`FixedCells::start`]).
    pub fn of(&self, g: u32) -> &[u32] {
        let g = g as usize;
        match (self.offsets.get(g), self.offsets.get(g + 1)) {
            (Some(&a), Some(&b)) => &self.cells[a..b],
            _ => &[],
        }
    }
}

/// The cells of one aggregate: a run of words per cell by cell id (ids in creation order),
/// and `others.len()` side accumulators per cell.
pub(crate) struct FixedCells {
    /// Where each metric's partial lives, in metric order.
    slots: Vec<Slot>,
    /// The cells, the same number of words each, by cell id.
    words: WordArena,
    /// A fresh cell's side accumulators.
    others: Vec<Acc>,
    /// Side accumulators, `others.len()` per cell, by cell id.
    other_accs: Vec<Acc>,
    /// Each group's chain of cells, by group index.
    chains: Vec<Chain>,
    /// (group, window start) -> cell id, for groups whose cells arrived out of order.
    unordered: FxHashMap<(u32, i64), u32>,
    /// Whether event times take two words (windows of 2^32 ms or more; see [`EVENTS`]).
    wide_events: bool,
    /// Float sums that outgrew their word, by (cell, metric index) ([`Slot::Float`]).
    wide_sums: FxHashMap<(u32, u32), FloatSum>,
    /// Rows without a number for a float sum, by (cell, metric index), where there were any.
    gaps: FxHashMap<(u32, u32), u64>,
}

impl FixedCells {
    /// Cells for `metrics` over windows of `window_ms`.
    pub fn new(metrics: &[MetricSpec], window_ms: i64) -> Self {
        let wide_events = window_ms > i64::from(u32::MAX);
        let head_words = EVENTS + 1 + usize::from(wide_events);
        let (mut slots, mut others, mut at) = (Vec::new(), Vec::new(), head_words);
        // The next free bit of FLAGS (bit 0 is REOPENED).
        let mut bit = 1;
        let mut take_bit = || {
            let b = (bit < 64).then(|| 1u64 << bit);
            bit += 1;
            b
        };
        for m in metrics {
            let placed = match (m.func, Number::of(m.out_ty)) {
                (MetricFunc::Count, _) => Some((Slot::Rows, 0)),
                (MetricFunc::CountIf, _) => Some((Slot::Count(at), 1)),
                (MetricFunc::Sum, Some(Number::Int)) => Some((Slot::SumInt(at), 3)),
                (MetricFunc::Sum, Some(Number::Float)) | (MetricFunc::Avg, _) => {
                    let avg = m.func == MetricFunc::Avg;
                    let float = |(wide, gaps)| Slot::Float {
                        at,
                        avg,
                        wide,
                        gaps,
                    };
                    take_bit().zip(take_bit()).map(|bits| (float(bits), 1))
                }
                (MetricFunc::Min | MetricFunc::Max, Some(n)) => {
                    let min = m.func == MetricFunc::Min;
                    take_bit().map(|has| (Slot::Extreme { at, has, n, min }, 1))
                }
                _ => None,
            };
            // Any other metric, or one past the flag bits: an `Acc` of its own.
            let (slot, words) = placed.unwrap_or_else(|| {
                others.push(m.new_acc());
                (Slot::Other(others.len() - 1), 0)
            });
            slots.push(slot);
            at += words;
        }
        FixedCells {
            slots,
            words: WordArena::new(at),
            others,
            other_accs: Vec::new(),
            chains: Vec::new(),
            unordered: FxHashMap::default(),
            wide_events,
            wide_sums: FxHashMap::default(),
            gaps: FxHashMap::default(),
        }
    }

    /// The number of cells.
    pub fn count(&self) -> usize {
        self.words.len()
    }

    fn cell_words(&self, cell: u32) -> &[u64] {
        self.words.get(cell)
    }

    fn cell_others(&self, cell: u32) -> &[Acc] {
        let n = self.others.len();
        let at = cell as usize * n;
        &self.other_accs[at..at + n]
    }

    /// Starts loading a cell's cache lines, to be read soon (a hint: no effect on results).
    #[inline]
    pub fn prefetch(&self, cell: u32) {
        let w = self.words.get(cell);
        // One word per 64-byte line, whatever the cell's alignment.
        for word in w.iter().step_by(8).chain(w.last()) {
            prefetch(word);
        }
    }

    /// Starts loading group `g`'s chain (a hint: no effect on results).
    #[inline]
    pub fn prefetch_chain(&self, g: u32) {
        if let Some(chain) = self.chains.get(g as usize) {
            prefetch(chain);
        }
    }

    /// Starts loading the cell group `g` touched last (a hint: no effect on results).
    #[inline]
    pub fn prefetch_last_cell(&self, g: u32) {
        let last = self.chain_of(g).last;
        if last != NO_CELL {
            self.prefetch(last);
        }
    }

    /// A cell's window start.
    pub fn start(&self, cell: u32) -> i64 {
        self.words.get(cell)[START] as i64
    }

    /// The id of the cell (group `g`, start), created empty if new; the group's last
    /// cell from now on.
    ///
    /// While a group's cells arrive in window order (time-ordered data), a window after
    /// all of them is new (decided from the newest cell alone) and an earlier one is found
    /// a few steps back along the group's chain; a group whose cells arrive out of order
    /// moves to the (group, start) hash map.
    #[inline]
    pub fn cell(&mut self, g: u32, start: i64) -> u32 {
        let chain = self.chain_of(g);
        if chain.last != NO_CELL && self.start(chain.last) == start {
            return chain.last;
        }
        let after_all = chain.head == NO_CELL || start > self.start(chain.head);
        let id = if chain.ordered && after_all {
            self.push(g, start)
        } else {
            self.find_or_push(g, start)
        };
        // The group has a cell, so it has a chain.
        self.chains[g as usize].last = id;
        id
    }

    /// [`Self::cell`] for the tumbling window of `size` ms that holds `ts`: the group's
    /// last cell when its window holds `ts` (found without a division).
    #[inline]
    pub fn tumbling_cell(&mut self, g: u32, ts: i64, size: i64) -> u32 {
        let last = self.chain_of(g).last;
        if last != NO_CELL {
            let in_last = ts
                .checked_sub(self.start(last))
                .is_some_and(|d| (0..size).contains(&d));
            if in_last {
                return last;
            }
        }
        self.cell(g, ts - ts.rem_euclid(size))
    }

    /// [`Self::cell`] for a window at or before the group's newest one, or of an
    /// unordered group.
    fn find_or_push(&mut self, g: u32, start: i64) -> u32 {
        if self.chain_of(g).ordered {
            let mut id = self.newest(g);
            for _ in 0..MAX_WALK {
                if id == NO_CELL || self.start(id) < start {
                    break;
                }
                if self.start(id) == start {
                    return id;
                }
                id = self.prev(id);
            }
            self.chains[g as usize].ordered = false;
            let known: Vec<(i64, u32)> = self.chain(g).map(|id| (self.start(id), id)).collect();
            for (s, id) in known {
                self.unordered.insert((g, s), id);
            }
        }
        match self.unordered.get(&(g, start)) {
            Some(&id) => id,
            None => {
                let id = self.push(g, start);
                self.unordered.insert((g, start), id);
                id
            }
        }
    }

    fn chain_of(&self, g: u32) -> Chain {
        self.chains.get(g as usize).copied().unwrap_or(Chain::EMPTY)
    }

    fn newest(&self, g: u32) -> u32 {
        self.chain_of(g).head
    }

    fn prev(&self, cell: u32) -> u32 {
        self.words.get(cell)[LINK] as u32
    }

    /// The group's cells, newest first (creation order, reversed).
    fn chain(&self, g: u32) -> impl Iterator<Item = u32> + '_ {
        let first = self.newest(g);
        std::iter::successors((first != NO_CELL).then_some(first), move |&id| {
            let prev = self.prev(id);
            (prev != NO_CELL).then_some(prev)
        })
    }

    /// Every cell's (window start, id), grouped by group and by start within a group, from
    /// one pass over the arena (a counting sort by group).
    pub fn by_group(&self) -> CellsByGroup {
        let group = |id: usize| (self.words.get(id as u32)[LINK] >> 32) as usize;
        // Offsets from the groups' cell counts (kept as cells are made: one pass over the
        // cells, not two).
        let mut offsets = Vec::with_capacity(self.chains.len() + 1);
        offsets.push(0);
        for chain in &self.chains {
            offsets.push(offsets[offsets.len() - 1] + chain.len as usize);
        }
        let mut fill = offsets.clone();
        let mut cells = vec![0u32; self.count()];
        for id in 0..self.count() {
            let at = &mut fill[group(id)];
            cells[*at] = id as u32;
            *at += 1;
        }
        // A group's cells were made in window order unless its chain says otherwise
        // ([`Self::cell`]): only those are sorted.
        for (g, chain) in self.chains.iter().enumerate() {
            if !chain.ordered {
                let (a, b) = (offsets[g], offsets[g + 1]);
                cells[a..b].sort_unstable_by_key(|&id| self.start(id));
            }
        }
        CellsByGroup { offsets, cells }
    }

    /// Appends an empty cell (g, start); returns its id.
    fn push(&mut self, g: u32, start: i64) -> u32 {
        let id = self.count() as u32;
        if self.chains.len() <= g as usize {
            self.chains.resize(g as usize + 1, Chain::EMPTY);
        }
        let chain = &mut self.chains[g as usize];
        let prev = std::mem::replace(&mut chain.head, id);
        chain.len += 1;
        let link = u64::from(prev) | u64::from(g) << 32;
        let (first, last) = (i64::MAX as u64, i64::MIN as u64);
        let narrow = [start as u64, 0, link, 0, NO_EVENTS];
        let wide = [start as u64, 0, link, 0, first, last];
        self.words
            .push(if self.wide_events { &wide } else { &narrow });
        self.other_accs.extend_from_slice(&self.others);
        id
    }

    /// Adds a row observed at `ts` to cell `cell`.
    #[inline]
    pub fn update(
        &mut self,
        cell: u32,
        metrics: &[MetricSpec],
        row: &[Val<'_>],
        ts: i64,
        reopened: bool,
        scratch: &mut String,
    ) {
        let w = self.words.get_mut(cell);
        w[ROWS] += 1;
        note_events(w, self.wide_events, ts, ts);
        if reopened {
            w[FLAGS] |= REOPENED;
        }
        let others = cell as usize * self.others.len();
        for (i, (slot, m)) in self.slots.iter().zip(metrics).enumerate() {
            let owned;
            let v = match (&m.arg, m.func) {
                (None, _) => &Val::Null,
                (Some(cond), MetricFunc::CountIf) => {
                    if cond.matches(row) {
                        if let Slot::Count(o) = *slot {
                            w[o] += 1;
                        }
                    }
                    continue;
                }
                (Some(arg), _) => match arg.as_column() {
                    Some(col) => row.get(col).unwrap_or(&Val::Null),
                    None => {
                        owned = arg.eval(row);
                        &owned
                    }
                },
            };
            match *slot {
                Slot::Rows => {}
                Slot::Count(o) => w[o] += 1,
                Slot::SumInt(o) => {
                    if let Val::Int(i) = v {
                        let sum = read_i128(&w[o..]).saturating_add(i128::from(*i));
                        write_i128(&mut w[o..], sum);
                        w[o + 2] += 1;
                    }
                }
                Slot::Float { at, wide, gaps, .. } => {
                    let key = (cell, i as u32);
                    let Some(x) = v.as_f64() else {
                        w[FLAGS] |= gaps;
                        *self.gaps.entry(key).or_insert(0) += 1;
                        continue;
                    };
                    if w[FLAGS] & wide == 0 {
                        if let Some(nanos) = FloatSum::add_to_i64(w[at] as i64, x) {
                            w[at] = nanos as u64;
                            continue;
                        }
                        // The sum outgrows its word: kept aside from now on.
                        w[FLAGS] |= wide;
                    }
                    let word = i128::from(w[at] as i64);
                    let sum = self.wide_sums.entry(key).or_insert_with(|| FloatSum {
                        nanos: word,
                        ..FloatSum::default()
                    });
                    sum.add_uncounted(x);
                }
                Slot::Extreme { at, has, n, min } => {
                    if let Some(bits) = n.bits(v) {
                        keep_extreme(w, at, has, n, min, bits);
                    }
                }
                Slot::Other(k) => self.other_accs[others + k].add(v, ts, scratch),
            }
        }
    }

    /// Merges cell `id` of `other` (a table of the same aggregate) into cell `cell`.
    pub fn merge_cell(&mut self, cell: u32, other: &FixedCells, id: u32) {
        let theirs = other.cell_words(id);
        let (my_rows, their_rows) = (self.cell_words(cell)[ROWS], theirs[ROWS]);
        // Float sums first: their counts of values follow from the rows before the merge.
        for i in 0..self.slots.len() {
            if let Slot::Float { .. } = self.slots[i] {
                let mut sum = self.float_sum(cell, i, my_rows);
                sum.merge(&other.float_sum(id, i, their_rows));
                self.set_float_sum(cell, i, sum, my_rows + their_rows);
            }
        }
        let (first, last) = other.events(theirs);
        let w = self.words.get_mut(cell);
        w[ROWS] += their_rows;
        if first <= last {
            note_events(w, self.wide_events, first, last);
        }
        w[FLAGS] |= theirs[FLAGS] & REOPENED;
        for slot in &self.slots {
            match *slot {
                Slot::Rows | Slot::Float { .. } => {}
                Slot::Count(o) => w[o] += theirs[o],
                Slot::SumInt(o) => {
                    let sum = read_i128(&w[o..]).saturating_add(read_i128(&theirs[o..]));
                    write_i128(&mut w[o..], sum);
                    w[o + 2] += theirs[o + 2];
                }
                Slot::Extreme { at, has, n, min } => {
                    if theirs[FLAGS] & has != 0 {
                        keep_extreme(w, at, has, n, min, theirs[at]);
                    }
                }
                Slot::Other(k) => {
                    let n = self.others.len();
                    self.other_accs[cell as usize * n + k].merge(&other.cell_others(id)[k]);
                }
            }
        }
    }

    /// Metric `i` of a cell as an accumulator.
    pub fn acc(&self, cell: u32, i: usize) -> Acc {
        let w = self.cell_words(cell);
        match self.slots[i] {
            Slot::Rows => Acc::Count(w[ROWS]),
            Slot::Count(o) => Acc::Count(w[o]),
            Slot::SumInt(o) => Acc::SumInt {
                sum: read_i128(&w[o..]),
                n: w[o + 2],
            },
            Slot::Float { avg: true, .. } => Acc::Avg(self.float_sum(cell, i, w[ROWS])),
            Slot::Float { avg: false, .. } => Acc::SumFloat(self.float_sum(cell, i, w[ROWS])),
            Slot::Extreme { at, has, n, min } => {
                let v = (w[FLAGS] & has != 0).then(|| n.scalar(w[at]));
                if min {
                    Acc::Min(v)
                } else {
                    Acc::Max(v)
                }
            }
            Slot::Other(k) => self.cell_others(cell)[k].clone(),
        }
    }

    /// Metric `i` of a cell as an output value.
    #[inline]
    pub fn value(&self, cell: u32, i: usize) -> Val<'_> {
        let w = self.cell_words(cell);
        match self.slots[i] {
            Slot::Rows => Val::Int(i64::try_from(w[ROWS]).unwrap_or(i64::MAX)),
            Slot::Count(o) => Val::Int(i64::try_from(w[o]).unwrap_or(i64::MAX)),
            Slot::Extreme { at, has, n, .. } if w[FLAGS] & has != 0 => {
                n.scalar(w[at]).as_val().into_owned()
            }
            Slot::Extreme { .. } => Val::Null,
            Slot::Other(k) => self.cell_others(cell)[k].val(),
            Slot::Float { avg: false, .. } => self.float_sum(cell, i, w[ROWS]).total(),
            // Sums and averages as their accumulator computes them.
            Slot::SumInt(_) | Slot::Float { .. } => self.acc(cell, i).val().into_owned(),
        }
    }

    /// Appends each metric of a cell as a CSV field after a comma: what writing
    /// [`Self::value`] with `output::value_field` gives, without building the values.
    pub fn write_fields(&self, cell: u32, buf: &mut Vec<u8>) {
        use crate::output::{value_field, write_cents, write_f64, write_int, write_ts};
        let w = self.cell_words(cell);
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for (i, slot) in self.slots.iter().enumerate() {
            buf.push(b',');
            match *slot {
                Slot::Rows => write_int(buf, count(w[ROWS])),
                Slot::Count(o) => write_int(buf, count(w[o])),
                Slot::Float { avg: false, .. } => {
                    let sum = self.float_sum(cell, i, w[ROWS]);
                    if sum.n > 0 {
                        match sum.cents() {
                            Some(cents) => write_cents(buf, cents),
                            None => write_f64(buf, sum.value()),
                        }
                    }
                }
                Slot::Extreme { at, has, n, .. } if w[FLAGS] & has != 0 => match n {
                    Number::Int => write_int(buf, w[at] as i64),
                    Number::Float => write_f64(buf, f64::from_bits(w[at])),
                    Number::Ts => write_ts(buf, w[at] as i64),
                },
                Slot::Extreme { .. } => {}
                _ => value_field(buf, &self.value(cell, i)),
            }
        }
    }

    /// A cell as a [`CellState`].
    pub fn cell_state(&self, cell: u32) -> CellState {
        let w = self.cell_words(cell);
        let (first_event_ms, last_event_ms) = self.events(w);
        CellState {
            accs: (0..self.slots.len()).map(|i| self.acc(cell, i)).collect(),
            reopened: w[FLAGS] & REOPENED != 0,
            first_event_ms,
            last_event_ms,
            rows: w[ROWS],
        }
    }

    /// A cell's first and last event time (`i64::MAX`, `i64::MIN` before its first row).
    fn events(&self, w: &[u64]) -> (i64, i64) {
        if self.wide_events {
            return (w[EVENTS] as i64, w[EVENTS + 1] as i64);
        }
        let (first, last) = (w[EVENTS] as u32, (w[EVENTS] >> 32) as u32);
        if first == u32::MAX {
            return (i64::MAX, i64::MIN);
        }
        let start = w[START] as i64;
        (start + i64::from(first), start + i64::from(last))
    }

    /// The sum of metric `i` (a [`Slot::Float`]) in a cell of `rows` rows.
    fn float_sum(&self, cell: u32, i: usize, rows: u64) -> FloatSum {
        let Slot::Float { at, wide, gaps, .. } = self.slots[i] else {
            return FloatSum::default();
        };
        let (w, key) = (self.cell_words(cell), (cell, i as u32));
        let mut sum = match w[FLAGS] & wide {
            0 => FloatSum {
                nanos: i128::from(w[at] as i64),
                ..FloatSum::default()
            },
            _ => self.wide_sums.get(&key).cloned().unwrap_or_default(),
        };
        let missing = match w[FLAGS] & gaps {
            0 => 0,
            _ => self.gaps.get(&key).copied().unwrap_or(0),
        };
        sum.n = rows.saturating_sub(missing);
        sum
    }

    /// Stores `sum` as metric `i` (a [`Slot::Float`]) of a cell of `rows` rows.
    fn set_float_sum(&mut self, cell: u32, i: usize, sum: FloatSum, rows: u64) {
        let Slot::Float { at, wide, gaps, .. } = self.slots[i] else {
            return;
        };
        let key = (cell, i as u32);
        let w = self.words.get_mut(cell);
        match i64::try_from(sum.nanos) {
            // (+0.0 exactly: a -0.0 or NaN side sum keeps the wide form.)
            Ok(nanos) if sum.big.to_bits() == 0 => {
                w[at] = nanos as u64;
                w[FLAGS] &= !wide;
                self.wide_sums.remove(&key);
            }
            _ => {
                w[FLAGS] |= wide;
                self.wide_sums.insert(key, FloatSum { n: 0, ..sum });
            }
        }
        match rows.saturating_sub(sum.n) {
            0 => {
                w[FLAGS] &= !gaps;
                self.gaps.remove(&key);
            }
            missing => {
                w[FLAGS] |= gaps;
                self.gaps.insert(key, missing);
            }
        }
    }
}

/// Keeps `bits` in the min (`min`) or max slot at word `at` of cell `w` (with has-value
/// bit `has`) when the slot is empty or `bits` beats its value.
fn keep_extreme(w: &mut [u64], at: usize, has: u64, n: Number, min: bool, bits: u64) {
    let want = if min {
        std::cmp::Ordering::Less
    } else {
        std::cmp::Ordering::Greater
    };
    if w[FLAGS] & has == 0 || n.order(bits, w[at]) == want {
        w[FLAGS] |= has;
        w[at] = bits;
    }
}

fn read_i128(w: &[u64]) -> i128 {
    ((u128::from(w[1]) << 64) | u128::from(w[0])) as i128
}

fn write_i128(w: &mut [u64], v: i128) {
    w[0] = v as u64;
    w[1] = ((v as u128) >> 64) as u64;
}

/// Widens a cell's event times (see [`EVENTS`]) to take in `first..=last`, times in the
/// cell's window.
#[inline]
fn note_events(w: &mut [u64], wide: bool, first: i64, last: i64) {
    if wide {
        w[EVENTS] = (w[EVENTS] as i64).min(first) as u64;
        w[EVENTS + 1] = (w[EVENTS + 1] as i64).max(last) as u64;
        return;
    }
    let start = w[START] as i64;
    // In the window, an offset is below its length, itself below 2^32 - 1.
    let offset = |t: i64| u32::try_from(t - start).unwrap_or(u32::MAX - 1);
    let first = (w[EVENTS] as u32).min(offset(first));
    let last = ((w[EVENTS] >> 32) as u32).max(offset(last));
    w[EVENTS] = u64::from(first) | u64::from(last) << 32;
}

/// Starts loading the cache line of `value` without waiting for it (a hint: no effect on
/// results).
#[inline(always)]
fn prefetch<T>(value: &T) {
    let at = std::ptr::from_ref(value);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of the x86-64 baseline, and a prefetch neither faults nor
    // changes memory (the address is a live reference anyway). Safe to call since Rust
    // 1.87; `unsafe` for the declared minimum version.
    #[allow(unused_unsafe)]
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(at.cast::<i8>());
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `prfm` is a hint: it neither faults nor changes memory, registers or flags.
    unsafe {
        std::arch::asm!(
            "prfm pldl1keep, [{0}]",
            in(reg) at,
            options(nostack, readonly, preserves_flags)
        );
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = at;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{metric_specs, xorshift};

    fn metrics() -> Vec<MetricSpec> {
        metric_specs(&[
            ("c", "count()"),
            ("ci", "count_if(amount > 10.0)"),
            ("sf", "sum(amount)"),
            ("si", "sum(n)"),
            ("mnf", "min(amount)"),
            ("mxf", "max(amount * 2.0)"),
            ("mni", "min(n)"),
            ("mxi", "max(n)"),
            ("mxt", "max(ts)"),
            ("av", "avg(amount)"),
            ("mxs", "max(s)"),
            ("la", "last(s)"),
            ("di", "distinct(s)"),
            ("p90", "p90(amount)"),
        ])
    }

    /// A row; its numbers are null one time in 10, or `nulls` times in 10 if more.
    fn row(next: &mut impl FnMut() -> u64, ts: i64, nulls: u64) -> Vec<Val<'static>> {
        let pick = if next() % 10 < nulls { 0 } else { next() % 30 };
        let x = match pick {
            0..=2 => Val::Null,
            3 => Val::Float(-0.0),
            4 => Val::Float(f64::NAN),
            5 => Val::Float(1e30),
            // Two of these outgrow a word of nano units.
            6 => Val::Float(7e9),
            7 => Val::Float(-7.5e9),
            _ => Val::Float((next() % 100_000) as f64 / 100.0 - 300.0),
        };
        let n = match pick {
            0 => Val::Null,
            _ => Val::Int((next() % 2_000) as i64 - 1_000),
        };
        let s = Val::Str(format!("s{}", next() % 17).into());
        vec![x, n, s, Val::Ts(ts)]
    }

    /// Past the 63 flag bits, sums and extremes keep an `Acc` of their own, with the same
    /// results.
    #[test]
    fn metrics_past_the_flag_bits_are_accs() {
        let names: Vec<String> = (0..60).map(|i| format!("m{i}")).collect();
        let defs: Vec<(&str, &str)> = (names.iter())
            .enumerate()
            .map(|(i, name)| {
                (
                    name.as_str(),
                    ["sum(amount)", "max(n)", "avg(amount)"][i % 3],
                )
            })
            .collect();
        let metrics = metric_specs(&defs);
        let mut cells = FixedCells::new(&metrics, 600_000);
        let others = cells.slots.iter().filter(|s| matches!(s, Slot::Other(_)));
        assert!(others.count() >= 5);
        let (mut want, mut scratch) = (CellState::new(&metrics), String::new());
        let mut next = xorshift(3);
        for i in 0..50 {
            let ts = 1_000 + i * 7;
            let row = row(&mut next, ts, 0);
            let id = cells.cell(0, 0);
            cells.update(id, &metrics, &row, ts, false, &mut scratch);
            want.update(&metrics, &row, ts, &mut scratch);
        }
        assert_eq!(format!("{:?}", cells.cell_state(0)), format!("{want:?}"));
    }

    /// Cells in the compact layout give what `CellState::update` gives, row by row and
    /// after merging, for every kind of slot, with groups whose windows arrive in order,
    /// a little out of order (found back along the chain) and far out of order (indexed).
    #[test]
    fn cells_agree_with_cell_states() {
        // Event times as offsets in one word, and as two words (windows of 2^32 ms or more).
        for window_ms in [600_000, 1 << 33] {
            cells_agree_with_cell_states_over(window_ms);
        }
    }

    fn cells_agree_with_cell_states_over(window_ms: i64) {
        let metrics = metrics();
        let mut next = xorshift(7);
        let mut halves = [
            FixedCells::new(&metrics, window_ms),
            FixedCells::new(&metrics, window_ms),
        ];
        let mut want: std::collections::BTreeMap<(u32, i64), CellState> = Default::default();
        let mut scratch = String::new();
        for i in 0..3_000i64 {
            let g = (i % 3) as u32;
            let window = match g {
                0 => i / 30,
                1 => i / 30 - (next() % 4) as i64,
                _ => (next() % 40) as i64,
            };
            let ts = window * 600_000 + (next() % 600_000) as i64;
            // Group 2 has cells without any number in one half and some in the other.
            let row = row(&mut next, ts, if g == 2 { 9 } else { 0 });
            let start = window * 600_000;
            let cells = &mut halves[i as usize % 2];
            let id = cells.cell(g, start);
            cells.update(id, &metrics, &row, ts, i % 11 == 0, &mut scratch);
            let cell = want
                .entry((g, start))
                .or_insert_with(|| CellState::new(&metrics));
            cell.update(&metrics, &row, ts, &mut scratch);
            cell.reopened |= i % 11 == 0;
        }
        // In-order windows stay on the chain; random ones moved to the index.
        let ordered = |g: u32| halves[0].chain_of(g).ordered;
        assert!(ordered(0) && !ordered(2));
        let [mut first, second] = halves;
        let theirs = second.by_group();
        for g in 0..3 {
            for &id in theirs.of(g) {
                let cell = first.cell(g, second.start(id));
                first.merge_cell(cell, &second, id);
            }
        }
        let mut got = std::collections::BTreeMap::new();
        let mine = first.by_group();
        for g in 0..3 {
            let cells = mine.of(g);
            assert!(cells.is_sorted_by_key(|&id| first.start(id)));
            for &id in cells {
                let start = first.start(id);
                let state = first.cell_state(id);
                let mut fields = Vec::new();
                for (i, acc) in state.accs.iter().enumerate() {
                    assert_eq!(
                        format!("{:?}", first.value(id, i)),
                        format!("{:?}", acc.val())
                    );
                    fields.push(b',');
                    crate::output::value_field(&mut fields, &acc.val());
                }
                let mut written = Vec::new();
                first.write_fields(id, &mut written);
                assert_eq!(
                    String::from_utf8_lossy(&written),
                    String::from_utf8_lossy(&fields)
                );
                got.insert((g, start), state);
            }
        }
        // Sums in a word and sums outgrown, with and without rows lacking a number.
        let Slot::Float { wide, gaps, .. } = first.slots[2] else {
            panic!("sum(amount) is a float slot");
        };
        let flags = |id: u32| first.cell_words(id)[FLAGS];
        let ids = 0..first.count() as u32;
        assert!(ids.clone().any(|id| flags(id) & (wide | gaps) == 0));
        assert!(ids.clone().any(|id| flags(id) & wide != 0));
        assert!(ids.clone().any(|id| flags(id) & gaps != 0));
        assert_eq!(got.len(), want.len());
        for (key, cell) in &want {
            // NaN != NaN: compare the debug text (the bits print alike).
            assert_eq!(
                format!("{:?}", got[key]),
                format!("{cell:?}"),
                "cell {key:?}"
            );
        }
    }
}
