//! Whether a FULL refresh may write a stream table's rows itself (`full_insert`, `full_delete`)
//! rather than through `INSERT` and `DELETE`: only where those statements would do no more than
//! write the table's rows.

use pgrx::pg_sys::{self, Oid};

/// The refresh may write a table's rows itself (see [`writes_directly`]).
pub struct DirectWrites {
    relid: Oid,
    /// The table has pg_trickle's signal triggers, which its own writes do not fire.
    signals: bool,
}

impl DirectWrites {
    /// After the refresh wrote the table's rows itself: what its signal triggers would have said
    /// (that it changed, so the FULL stream tables reading it are not skipped: cdc/signal.rs), said.
    pub fn written(&self) {
        if self.signals {
            crate::cdc::signal::note(self.relid.to_u32());
        }
    }
}

/// Whether the refresh may write the table's rows itself, without its `INSERT` or `DELETE`: where
/// those statements would do no more than write the table's rows. So a plain table (not a partition,
/// whose bound an `INSERT` checks; without inheritance children, whose rows a `DELETE` deletes too),
/// with no rules, no row-level security, the current role (the owner) holding `privilege`
/// (`ACL_INSERT`, `ACL_DELETE`), and no trigger but pg_trickle's own, known by the function they run:
/// its guard; its signal triggers, whose signal the refresh then gives itself
/// ([`DirectWrites::written`]); its capture triggers while its contents are replaced uncaptured. A
/// user's trigger would not fire, nor a foreign key's. Read from the open relation, under the
/// refresh's lock.
pub unsafe fn writes_directly(rel: pg_sys::Relation, privilege: u32) -> Option<DirectWrites> {
    // SAFETY: `rel` is open; its trigger descriptor holds `numtriggers` entries.
    unsafe {
        let class = &*(*rel).rd_rel;
        let relid = (*rel).rd_id;
        let plain = class.relkind == pg_sys::RELKIND_RELATION as std::ffi::c_char
            && !class.relispartition
            && !class.relhassubclass
            && !class.relhasrules
            && !class.relrowsecurity;
        if !plain
            || pg_sys::pg_class_aclcheck(relid, pg_sys::GetUserId(), privilege as pg_sys::AclMode)
                != pg_sys::AclResult::ACLCHECK_OK
        {
            return None;
        }
        // The guard refuses writes other than refreshes; capture triggers are skipped while the
        // refresh replaces the contents uncaptured (cdc/replaced.rs). Any other trigger must fire.
        let replacing = crate::cdc::replaced::is_replacing(relid);
        let triggers: &[pg_sys::Trigger] = match (*rel).trigdesc.as_ref() {
            Some(d) if d.numtriggers > 0 && !d.triggers.is_null() => {
                std::slice::from_raw_parts(d.triggers, d.numtriggers as usize)
            }
            _ => &[],
        };
        let mut signals = false;
        for trigger in triggers {
            let name = std::ffi::CStr::from_ptr(trigger.tgname).to_string_lossy();
            if crate::cdc::is_own_signal_trigger(trigger, relid) {
                signals = true;
            } else if !(crate::catalog::guard::is_guard(trigger)
                || replacing && crate::cdc::own_capture_trigger(relid, &name))
            {
                return None;
            }
        }
        Some(DirectWrites { relid, signals })
    }
}
