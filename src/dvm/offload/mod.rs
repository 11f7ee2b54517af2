//! Real offload: what an external worker evaluates itself instead of the server (DESIGN, "DVM
//! engine: real offload"). The server derives a [`plan::LocalPlan`] from the stored operator tree and
//! hands it to the worker with the batch's bounds; the worker pulls the batch with binary COPY
//! ([`copy`]), reduces it ([`plan::LocalPlan::reduce`], with [`scalar`] expressions over [`value`]s)
//! and pushes the reduced delta back with binary COPY. Pure: no pgrx, no I/O.

pub mod copy;
pub mod plan;
pub mod scalar;
pub mod value;
