//! What the transparency console computes, apart from serving it: the path of a data owner's
//! upload is [`uploads`] (decoded into the model's input within stated limits) → [`analysis`]
//! (scored through the library's runtime and tested against the model's reference
//! non-members, which [`registry`] loaded at start) → the evidence, as much of it as
//! [`disclosure`] lets the console tell a stranger → [`crate::formats::bundle`] signs it for
//! filing. The `mint serve` binary adds HTTP, fairness
//! between clients and the page; `mint verify-bundle` recomputes a bundle with the same
//! functions.

pub mod analysis;
pub mod disclosure;
pub mod registry;
pub mod uploads;
