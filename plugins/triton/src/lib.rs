//! `libmint_backend_triton.so`, the NVIDIA Triton backend plugin of mint-audit: only its entry
//! point. The code is `mint-backend-triton-core` (plugins/triton-core), an ordinary Rust
//! library, so that hosts shipping as one object (the Python wheel) link it beside the CPU
//! backend without two `mint_backend_entry` symbols colliding.

#![forbid(unsafe_code)]

mint_backend_abi::export_entry!(mint_backend_triton_core::entry);
