//! What a refresh does, and why, decided by pure code (STYLE.md 13): the executor (`refresh::run_claimed`,
//! over SPI) gathers only the facts a decision asks for, one at a time, and carries the decision
//! out. No I/O here: every branch is unit-tested below.

/// What the decision knows. The executor fills the `Option`s when asked (`Step::Ask`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The refresh that fills a new stream table.
    pub creating: bool,
    /// A source was truncated or changed, or capture was interrupted (`pgt_stream_tables.needs_reinit`).
    pub needs_reinit: bool,
    /// The stream table is maintained DIFFERENTIAL (its effective mode).
    pub differential: bool,
    /// Why its effective mode is FULL, if it is.
    pub mode_reason: Option<String>,
    /// Its refresh mode is AUTO: the cost model may choose FULL for a batch.
    pub auto: bool,
    /// The batch comes reduced from an external worker: its change rows (`Batch::Staged`).
    pub staged_changes: Option<i64>,
    /// It has a frontier (it was refreshed once).
    pub has_frontier: bool,
    /// The server started (or a standby was promoted) after its last successful refresh: recovery
    /// may have emptied an unlogged source since, which no trigger records.
    pub restarted: bool,
    /// Asked (after a restart): an unlogged table the query reads, if any.
    pub unlogged_source: Option<Option<String>>,
    /// Asked: the source this very transaction changed, if any.
    pub own_changes: Option<Option<String>>,
    /// Asked: change rows in the batch.
    pub batch_rows: Option<i64>,
    /// Known with `batch_rows`: why the batch replaced a source's rows uncaptured (TRUNCATE, or a
    /// FULL refresh of a stream table; cdc/replaced.rs).
    pub replaced: Option<String>,
    /// Asked (AUTO): whether FULL is predicted cheaper for this batch, and why.
    pub auto_choice: Option<(bool, String)>,
    /// Asked: the storage table has the aggregate state the delta reads.
    pub state_ready: Option<bool>,
    /// Asked (a worker's empty batch): the change buffer's batch is empty too.
    pub buffer_batch_empty: Option<bool>,
}

/// A fact the decision needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    UnloggedSource,
    OwnChanges,
    BatchRows,
    AutoChoice,
    StateReady,
    BufferBatchEmpty,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Recompute from the query; `reinit_next`: the next refresh must be FULL too, and why.
    Full {
        reason: String,
        reinit_next: Option<String>,
    },
    /// Check the query against the sources again, then FULL (`refresh/reinit.rs`); `again_next`:
    /// the next refresh must be FULL too, and why.
    Reinitialise { again_next: Option<String> },
    /// Nothing changed: advance the frontier only.
    NoData,
    /// Compute and apply the delta; `auto`: why AUTO kept it DIFFERENTIAL.
    Differential { auto: Option<String> },
    /// Apply the Δ an external worker reduced.
    ApplyStaged,
    /// The worker read no change rows where the buffer has some: it cannot read the buffer.
    RefuseEmptyWorkerBatch,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Ask(Fact),
    Decide(Decision),
}

fn full(reason: impl Into<String>) -> Step {
    Step::Decide(Decision::Full {
        reason: reason.into(),
        reinit_next: None,
    })
}

/// The next step of the decision for what is known so far.
pub fn next(f: &Facts) -> Step {
    // The changes this very transaction made to a source are in the tables a FULL refresh reads,
    // but their change rows share its xid with any written after the refresh: no frontier separates
    // them. Whatever FULL refresh runs now (a first one, a reinitialisation, one for this reason),
    // the next refresh is FULL too, which absorbs every change row with this xid after commit.
    // (A worker's batch is applied in a transaction of its own.)
    let own = if f.differential && f.staged_changes.is_none() {
        match &f.own_changes {
            None => return Step::Ask(Fact::OwnChanges),
            Some(own) => own.as_deref(),
        }
    } else {
        None
    };
    let again_next = own.map(|source| {
        format!("the previous refresh ran inside the transaction that changed {source}")
    });
    if f.creating {
        return Step::Decide(Decision::Full {
            reason: match own {
                Some(source) => format!(
                    "initial population inside the transaction that changed {source}; FULL again next time"
                ),
                None => "initial population".into(),
            },
            reinit_next: again_next,
        });
    }
    if f.needs_reinit {
        return Step::Decide(Decision::Reinitialise { again_next });
    }
    if !f.differential {
        return full(f.mode_reason.clone().unwrap_or_else(|| "FULL mode".into()));
    }
    if let Some(source) = own {
        return Step::Decide(Decision::Full {
            reason: format!(
                "FULL inside the transaction that changed {source}; FULL again next time"
            ),
            reinit_next: again_next,
        });
    }
    // PostgreSQL empties unlogged tables in crash recovery, bypassing capture: what the stream
    // table stores may no longer be the result, and no batch says so. (A clean restart keeps them,
    // but nothing tells the two apart afterwards: one FULL refresh per restart is the price.)
    if f.restarted && f.has_frontier {
        match &f.unlogged_source {
            None => return Step::Ask(Fact::UnloggedSource),
            Some(Some(source)) => {
                return full(format!(
                    "the server restarted since the last refresh, and crash recovery empties unlogged tables such as {source} without a trace in the change buffer"
                ))
            }
            Some(None) => {}
        }
    }
    if let Some(changes) = f.staged_changes {
        if changes == 0 {
            return match f.buffer_batch_empty {
                None => Step::Ask(Fact::BufferBatchEmpty),
                Some(true) => Step::Decide(Decision::NoData),
                Some(false) => Step::Decide(Decision::RefuseEmptyWorkerBatch),
            };
        }
        return Step::Decide(Decision::ApplyStaged);
    }
    if !f.has_frontier {
        return full("no frontier recorded yet");
    }
    let Some(batch_rows) = f.batch_rows else {
        return Step::Ask(Fact::BatchRows);
    };
    if let Some(why) = &f.replaced {
        return full(why.clone());
    }
    if batch_rows == 0 {
        return Step::Decide(Decision::NoData);
    }
    let auto = if f.auto {
        match &f.auto_choice {
            None => return Step::Ask(Fact::AutoChoice),
            Some((true, why)) => return full(why.clone()),
            Some((false, why)) => Some(why.clone()),
        }
    } else {
        None
    };
    match f.state_ready {
        None => Step::Ask(Fact::StateReady),
        Some(false) => full("FULL to set up the stored aggregate state"),
        Some(true) => Step::Decide(Decision::Differential { auto }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the decision, answering each question from `answer`; the questions asked, and the decision.
    fn run(mut f: Facts, answer: impl Fn(Fact, &mut Facts)) -> (Vec<Fact>, Decision) {
        let mut asked = Vec::new();
        loop {
            match next(&f) {
                Step::Ask(fact) => {
                    assert!(!asked.contains(&fact), "asked twice for {fact:?}");
                    asked.push(fact);
                    answer(fact, &mut f);
                }
                Step::Decide(d) => return (asked, d),
            }
        }
    }

    fn differential() -> Facts {
        Facts {
            differential: true,
            has_frontier: true,
            ..Default::default()
        }
    }

    /// Answers: no own changes, `rows` in the batch, AUTO keeps it DIFFERENTIAL, state ready.
    fn quiet(rows: i64) -> impl Fn(Fact, &mut Facts) {
        move |fact, f| match fact {
            Fact::UnloggedSource => f.unlogged_source = Some(None),
            Fact::OwnChanges => f.own_changes = Some(None),
            Fact::BatchRows => f.batch_rows = Some(rows),
            Fact::AutoChoice => {
                f.auto_choice = Some((false, "DIFFERENTIAL predicted cheaper".into()))
            }
            Fact::StateReady => f.state_ready = Some(true),
            Fact::BufferBatchEmpty => f.buffer_batch_empty = Some(true),
        }
    }

    #[test]
    fn after_a_restart_only_an_unlogged_source_makes_it_full() {
        let (asked, _) = run(differential(), quiet(5));
        assert!(
            !asked.contains(&Fact::UnloggedSource),
            "asked without a restart"
        );
        let restarted = Facts {
            restarted: true,
            ..differential()
        };
        let (asked, d) = run(restarted.clone(), quiet(5));
        assert_eq!(
            asked,
            [
                Fact::OwnChanges,
                Fact::UnloggedSource,
                Fact::BatchRows,
                Fact::StateReady
            ]
        );
        assert_eq!(d, Decision::Differential { auto: None });
        // An empty batch, or a worker's, does not spare the FULL refresh.
        let staged = Facts {
            staged_changes: Some(3),
            ..restarted.clone()
        };
        for (facts, questions) in [
            (
                restarted.clone(),
                &[Fact::OwnChanges, Fact::UnloggedSource][..],
            ),
            (staged, &[Fact::UnloggedSource][..]),
        ] {
            let (asked, d) = run(facts, |fact, f| match fact {
                Fact::UnloggedSource => f.unlogged_source = Some(Some("public.u".into())),
                other => quiet(0)(other, f),
            });
            assert_eq!(asked, questions);
            assert!(
                matches!(&d, Decision::Full { reason, reinit_next: None } if reason.contains("unlogged tables such as public.u")),
                "{d:?}"
            );
        }
        // FULL-mode stream tables and ones never refreshed recompute anyway: not asked.
        let not_differential = Facts {
            differential: false,
            ..restarted.clone()
        };
        let never_refreshed = Facts {
            has_frontier: false,
            ..restarted
        };
        for (facts, questions) in [
            (not_differential, &[][..]),
            (never_refreshed, &[Fact::OwnChanges][..]),
        ] {
            let (asked, d) = run(facts, quiet(0));
            assert_eq!(asked, questions);
            assert!(matches!(d, Decision::Full { .. }), "{d:?}");
        }
    }

    #[test]
    fn a_differential_batch_asks_only_what_it_needs() {
        let (asked, d) = run(differential(), quiet(5));
        assert_eq!(asked, [Fact::OwnChanges, Fact::BatchRows, Fact::StateReady]);
        assert_eq!(d, Decision::Differential { auto: None });
        let (asked, d) = run(
            Facts {
                auto: true,
                ..differential()
            },
            quiet(5),
        );
        assert_eq!(
            asked,
            [
                Fact::OwnChanges,
                Fact::BatchRows,
                Fact::AutoChoice,
                Fact::StateReady
            ]
        );
        assert_eq!(
            d,
            Decision::Differential {
                auto: Some("DIFFERENTIAL predicted cheaper".into())
            }
        );
    }

    #[test]
    fn a_batch_replacing_a_source_is_full_without_the_cost_model() {
        let (asked, d) = run(
            Facts {
                auto: true,
                ..differential()
            },
            |fact, f| {
                quiet(1)(fact, f);
                if fact == Fact::BatchRows {
                    f.replaced = Some("public.src was truncated".into());
                }
            },
        );
        assert_eq!(asked, [Fact::OwnChanges, Fact::BatchRows]);
        assert!(
            matches!(&d, Decision::Full { reason, reinit_next: None } if reason == "public.src was truncated"),
            "{d:?}"
        );
    }

    #[test]
    fn an_empty_batch_is_no_data_without_the_cost_model() {
        let (asked, d) = run(
            Facts {
                auto: true,
                ..differential()
            },
            quiet(0),
        );
        assert_eq!(asked, [Fact::OwnChanges, Fact::BatchRows]);
        assert_eq!(d, Decision::NoData);
    }

    #[test]
    fn full_and_why() {
        let full = |reason: &str| Decision::Full {
            reason: reason.into(),
            reinit_next: None,
        };
        assert_eq!(
            run(
                Facts {
                    creating: true,
                    needs_reinit: true,
                    ..differential()
                },
                quiet(1)
            )
            .1,
            full("initial population")
        );
        assert_eq!(
            run(
                Facts {
                    needs_reinit: true,
                    ..differential()
                },
                quiet(1)
            )
            .1,
            Decision::Reinitialise { again_next: None }
        );
        let mode = Facts {
            differential: false,
            mode_reason: Some("LIMIT".into()),
            ..Default::default()
        };
        assert_eq!(run(mode, quiet(1)), (vec![], full("LIMIT")));
        assert_eq!(
            run(
                Facts {
                    differential: false,
                    ..Default::default()
                },
                quiet(1)
            )
            .1,
            full("FULL mode")
        );
        assert_eq!(
            run(
                Facts {
                    has_frontier: false,
                    ..differential()
                },
                quiet(1)
            ),
            (vec![Fact::OwnChanges], full("no frontier recorded yet"))
        );
        let (_, d) = run(
            Facts {
                auto: true,
                ..differential()
            },
            |fact, f| {
                quiet(9)(fact, f);
                if fact == Fact::AutoChoice {
                    f.auto_choice = Some((true, "FULL predicted cheaper".into()));
                }
            },
        );
        assert_eq!(d, full("FULL predicted cheaper"));
        let (_, d) = run(differential(), |fact, f| {
            quiet(9)(fact, f);
            if fact == Fact::StateReady {
                f.state_ready = Some(false);
            }
        });
        assert_eq!(d, full("FULL to set up the stored aggregate state"));
    }

    #[test]
    fn changes_of_this_very_transaction_make_it_full_twice() {
        let (asked, d) = run(differential(), |fact, f| {
            quiet(3)(fact, f);
            if fact == Fact::OwnChanges {
                f.own_changes = Some(Some("public.t".into()));
            }
        });
        assert_eq!(asked, [Fact::OwnChanges]);
        let again =
            Some("the previous refresh ran inside the transaction that changed public.t".into());
        assert_eq!(
            d,
            Decision::Full {
                reason: "FULL inside the transaction that changed public.t; FULL again next time"
                    .into(),
                reinit_next: again.clone(),
            }
        );
        // So does any other FULL refresh in such a transaction: a reinitialisation (until
        // 2026-12-05 its frontier left this transaction's change rows to the next refresh, which
        // applied them a second time) and the first one.
        let own = |fact, f: &mut Facts| {
            quiet(3)(fact, f);
            if fact == Fact::OwnChanges {
                f.own_changes = Some(Some("public.t".into()));
            }
        };
        let reinit = Facts {
            needs_reinit: true,
            ..differential()
        };
        assert_eq!(
            run(reinit, own).1,
            Decision::Reinitialise {
                again_next: again.clone()
            }
        );
        let creating = Facts {
            creating: true,
            has_frontier: false,
            ..differential()
        };
        assert_eq!(
            run(creating, own).1,
            Decision::Full {
                reason: "initial population inside the transaction that changed public.t; FULL again next time".into(),
                reinit_next: again,
            }
        );
    }

    #[test]
    fn a_worker_s_batch_is_applied_or_checked_when_empty() {
        let staged = |changes| Facts {
            staged_changes: Some(changes),
            auto: true,
            ..differential()
        };
        assert_eq!(run(staged(7), quiet(0)), (vec![], Decision::ApplyStaged));
        assert_eq!(
            run(staged(0), quiet(0)),
            (vec![Fact::BufferBatchEmpty], Decision::NoData)
        );
        let (_, d) = run(staged(0), |_, f| f.buffer_batch_empty = Some(false));
        assert_eq!(d, Decision::RefuseEmptyWorkerBatch);
    }
}
