//! A slab: entries keep their index (a mio token's payload) until removed.

/// Entries addressed by a stable index; freed indexes are reused.
pub struct Slab<T> {
    entries: Vec<Option<T>>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Stores `value`; its index.
    pub fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(i) => {
                self.entries[i] = Some(value);
                i
            }
            None => {
                self.entries.push(Some(value));
                self.entries.len() - 1
            }
        }
    }

    /// Takes the entry at `i` out.
    pub fn remove(&mut self, i: usize) -> Option<T> {
        let value = self.entries.get_mut(i)?.take()?;
        self.len -= 1;
        self.free.push(i);
        Some(value)
    }

    /// The entry at `i`.
    pub fn get(&self, i: usize) -> Option<&T> {
        self.entries.get(i)?.as_ref()
    }

    /// The entry at `i`, to change.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.entries.get_mut(i)?.as_mut()
    }

    /// The indexes in use (a copy, so the caller may remove while walking).
    pub fn indexes(&self) -> Vec<usize> {
        (0..self.entries.len())
            .filter(|&i| self.entries[i].is_some())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_stable_and_reused() {
        let mut s = Slab::default();
        let a = s.insert('a');
        let b = s.insert('b');
        assert_eq!(s.remove(a), Some('a'));
        assert_eq!(s.remove(a), None);
        assert_eq!(s.get(b), Some(&'b'));
        assert_eq!(s.insert('c'), a);
        assert_eq!(s.len(), 2);
        assert_eq!(s.indexes(), vec![a, b]);
    }
}
