//! rplan's runtime: everything that touches bytes on a disk.
//!
//! Targets (image files, block devices) behind one [`target::Device`] trait,
//! partition-table writers, streamed image restore, Windows dynamic disks
//! (LDM database and volume layouts), filesystem creation and FAT file installs. The executor drives
//! these from a compiled plan; dry-run drives the very same step code against
//! a simulated device. Nothing here parses plans: that is `rplan-compiler`.

// Diagnostics are the error values of steps; one is made per failure,
// never in a hot loop, so their size does not matter.
#![allow(clippy::result_large_err)]

pub mod bootsector;
pub mod capture;
pub mod events;
pub mod executor;
pub mod fat;
pub mod fault;
pub mod fingerprint;
pub mod identity;
pub mod inspect;
pub mod journal;
pub mod layout;
pub mod ldm;
pub mod mkfs;
pub mod overlay;
pub mod parallel;
pub mod preflight;
pub mod preview;
pub mod process;
pub mod restore;
pub mod table;
pub mod target;
pub mod verify;
