//! How an upper entry meets the lower entry at the same path.

use crate::EntryKind;

/// How an incoming entry of an upper layer meets what the lower layers left at that path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Nothing is below: the entry is simply created.
    Create,
    /// A directory over a directory: the children merge, and the upper entry provides
    /// the directory's metadata.
    MergeDirs,
    /// Anything else: remove the lower entry (its whole subtree if a directory) first.
    Replace,
}

/// Decides how an upper entry of kind `upper` meets a lower entry of kind `lower`.
pub fn resolve(lower: Option<EntryKind>, upper: EntryKind) -> Merge {
    match (lower, upper) {
        (None, _) => Merge::Create,
        (Some(EntryKind::Dir), EntryKind::Dir) => Merge::MergeDirs,
        (Some(_), _) => Merge::Replace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EntryKind::{Dir, NonDir};

    #[test]
    fn anything_over_nothing_is_created() {
        assert_eq!(resolve(None, Dir), Merge::Create);
        assert_eq!(resolve(None, NonDir), Merge::Create);
    }

    #[test]
    fn dir_over_dir_merges() {
        assert_eq!(resolve(Some(Dir), Dir), Merge::MergeDirs);
    }

    #[test]
    fn non_dir_over_dir_replaces() {
        assert_eq!(resolve(Some(Dir), NonDir), Merge::Replace);
    }

    #[test]
    fn dir_over_non_dir_replaces() {
        assert_eq!(resolve(Some(NonDir), Dir), Merge::Replace);
    }

    #[test]
    fn non_dir_over_non_dir_replaces() {
        assert_eq!(resolve(Some(NonDir), NonDir), Merge::Replace);
    }
}
