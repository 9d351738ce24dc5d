//! A FIFO with a limit in items and in bytes, for the host-side queues agents can fill
//! (dead letters, messages to the host). What does not fit is counted, never stored, and the
//! runtime reports the count as a `dropped` event: a full queue is never silent, and it never
//! takes the host's memory.

use std::collections::VecDeque;

pub struct BoundedQueue<T> {
    /// Items with the bytes each was accounted as.
    items: VecDeque<(T, usize)>,
    bytes: usize,
    max_items: usize,
    max_bytes: usize,
    /// Refused since the last `take_dropped` (reported per tick), and over the queue's life.
    dropped_recent: u64,
    dropped_total: u64,
}

impl<T> BoundedQueue<T> {
    pub fn new(max_items: usize, max_bytes: usize) -> Self {
        Self { items: VecDeque::new(), bytes: 0, max_items, max_bytes, dropped_recent: 0, dropped_total: 0 }
    }

    /// Appends `item` (accounted as `bytes`) if it fits both limits; otherwise counts it as
    /// dropped and returns false. The newest is refused, so what was queued stays in order.
    pub fn push(&mut self, item: T, bytes: usize) -> bool {
        if !self.has_room(bytes) {
            self.dropped_recent += 1;
            self.dropped_total += 1;
            return false;
        }
        self.bytes += bytes;
        self.items.push_back((item, bytes));
        true
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// The oldest item, if any.
    pub fn pop_front(&mut self) -> Option<T> {
        let (item, bytes) = self.items.pop_front()?;
        self.bytes -= bytes;
        Some(item)
    }

    /// Puts back an item just taken with `pop_front` (so it never counts as dropped).
    pub fn push_front(&mut self, item: T, bytes: usize) {
        self.bytes += bytes;
        self.items.push_front((item, bytes));
    }

    /// Everything queued, oldest first; the queue is empty afterwards.
    pub fn drain_all(&mut self) -> Vec<T> {
        self.bytes = 0;
        self.items.drain(..).map(|(item, _)| item).collect()
    }

    /// Takes out the items `take` picks, oldest first; the others stay, in order.
    pub fn take_where(&mut self, mut take: impl FnMut(&T) -> bool) -> Vec<T> {
        if !self.items.iter().any(|(item, _)| take(item)) {
            return Vec::new();
        }
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.items.len());
        for (item, bytes) in self.items.drain(..) {
            if take(&item) {
                self.bytes -= bytes;
                taken.push(item);
            } else {
                kept.push_back((item, bytes));
            }
        }
        self.items = kept;
        taken
    }

    /// The items, oldest first (they stay queued).
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter().map(|(item, _)| item)
    }

    /// Whether an item of `bytes` would be kept now.
    pub fn has_room(&self, bytes: usize) -> bool {
        self.items.len() < self.max_items && self.bytes.saturating_add(bytes) <= self.max_bytes
    }

    /// Items refused since the last call.
    pub fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped_recent)
    }

    /// Items refused over the queue's life.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Sets the count of items refused over the queue's life (a restored snapshot's).
    pub fn set_dropped_total(&mut self, n: u64) {
        self.dropped_total = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_either_limit_and_counts_what_it_refused() {
        let mut q = BoundedQueue::new(3, 100);
        assert!(q.push(1, 40));
        assert!(q.push(2, 40));
        assert!(!q.push(3, 40), "over the byte limit");
        assert!(q.push(4, 20));
        assert!(!q.push(5, 0), "over the item limit");
        assert_eq!((q.take_dropped(), q.take_dropped(), q.dropped_total()), (2, 0, 2));
        assert_eq!(q.pop_front(), Some(1));
        assert!(q.push(7, 40), "popping gave its bytes back");
        assert_eq!(q.drain_all(), vec![2, 4, 7]);
        assert!(q.push(6, 100), "room again after the drain");
    }

    #[test]
    fn take_where_keeps_the_rest_in_order_and_gives_their_bytes_back() {
        let mut q = BoundedQueue::new(4, 100);
        for (i, b) in [(1, 10), (2, 20), (3, 30), (4, 40)] {
            assert!(q.push(i, b));
        }
        assert_eq!(q.take_where(|&i| i % 2 == 0), vec![2, 4]);
        assert_eq!(q.take_where(|&i| i > 10), Vec::<i32>::new());
        assert_eq!(q.iter().copied().collect::<Vec<_>>(), vec![1, 3]);
        assert!(q.push(5, 60), "the 60 bytes taken are free again");
        assert_eq!(q.drain_all(), vec![1, 3, 5]);
    }
}
