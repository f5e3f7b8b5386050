//! The ISO's registry tree (MetalK8s contract): image folders as skopeo's `dir:` transport
//! writes them, and the nginx rules that serve them.

pub mod archive;
pub mod convert;
pub mod nginx;
pub mod verify;
