//! rplan's runtime: everything that touches bytes on a disk.
//!
//! Targets (image files, block devices) behind one [`target::Device`] trait,
//! partition-table writers, streamed image restore, md-compatible volume
//! layouts, filesystem creation and FAT file installs. The executor drives
//! these from a compiled plan; dry-run drives the very same step code against
//! a simulated device. Nothing here parses plans: that is `rplan-compiler`.

pub mod fat;
pub mod mkfs;
pub mod raid;
pub mod restore;
pub mod table;
pub mod target;
pub mod events;
pub mod executor;
pub mod journal;
pub mod layout;
pub mod process;
