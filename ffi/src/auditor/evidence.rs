//! Counts and evidence: the auditor's stats, cohorts by name, each cohort's stats and
//! membership evidence.

use super::*;

/// Reads the counters.
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_stats(auditor: *const mint_auditor, out: *mut mint_stats) -> mint_status {
    boundary("mint_auditor_stats", || {
        // SAFETY: NULL (refused) or valid for the call, per the header.
        let a = unsafe { auditor_ref(auditor) }?;
        // SAFETY: NULL (refused) or valid for the call, per the header.
        let out = unsafe { try_mut(out, "out") }?;
        *out = a.stats().into();
        Ok(())
    })
}

/// Finds the cohort named `name` (`"default"`, or one of the configuration's `cohorts`) and
/// writes its number to `*out`, for `mint_auditor_submit_cohort`. Numbers are positions in
/// the configuration (`default` is 0) and stay fixed for the auditor's life. An unknown
/// name is `MINT_ERR_INVALID_ARGUMENT`, and the message lists the declared ones. Since ABI 1.2.
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_cohort(
    auditor: *const mint_auditor,
    name: *const c_char,
    out: *mut u32,
) -> mint_status {
    boundary("mint_auditor_cohort", || {
        // SAFETY: NULL (refused) or valid for the call, per the header.
        let (a, name, out) = unsafe { (auditor_ref(auditor)?, try_str(name, "name")?, try_mut(out, "out")?) };
        let cohort = a.cohort(name).map_err(|e| Failure::new(MINT_ERR_INVALID_ARGUMENT, e.to_string()))?;
        *out = cohort.index() as u32;
        Ok(())
    })
}

/// Reads the counters of one cohort (`queue_depth` is the whole queue's). A cohort the
/// configuration does not declare is `MINT_ERR_INVALID_ARGUMENT`. Since ABI 1.2.
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_cohort_stats(
    auditor: *const mint_auditor,
    cohort: u32,
    out: *mut mint_stats,
) -> mint_status {
    boundary("mint_auditor_cohort_stats", || {
        // SAFETY: NULL (refused) or valid for the call, per the header.
        let (a, out) = unsafe { (auditor_ref(auditor)?, try_mut(out, "out")?) };
        let stats = a.cohort_stats(Cohort::from_number(cohort)).map_err(undeclared)?;
        *out = stats.into();
        Ok(())
    })
}

/// The membership evidence on one cohort (docs/evidence.md says how to read it). A value
/// that does not exist yet (no completed window, no calibration, too few reference samples)
/// is NaN. Since ABI 1.2.
#[repr(C)]
#[derive(Default)]
#[allow(non_camel_case_types)]
pub struct mint_cohort_evidence {
    /// Samples of the cohort scored since start.
    pub audited: u64,
    /// Of those, scored at or above the calibrated threshold.
    pub flagged: u64,
    /// Estimated share of members since start, and its 95% interval (NaN uncalibrated).
    pub member_fraction: f64,
    pub member_fraction_low: f64,
    pub member_fraction_high: f64,
    /// Completed evidence windows, and the samples of the current one.
    pub windows: u64,
    pub window_progress: u64,
    /// One-sided p-values of the last completed window: flags against the calibrated FPR
    /// (binomial), scores against the `reference` cohort (rank).
    pub window_binomial_p: f64,
    pub window_rank_p: f64,
    /// Completed windows with p below the configured alpha, per test.
    pub binomial_alarms: u64,
    pub rank_alarms: u64,
    /// Rank test of every score so far against every reference score so far: the z
    /// statistic, its one-sided p-value, and the AUC (0.5: no difference). Valid when looked
    /// at once, at a size planned in advance.
    pub overall_rank_z: f64,
    pub overall_rank_p: f64,
    pub overall_auc: f64,
}

impl From<CohortEvidence> for mint_cohort_evidence {
    fn from(e: CohortEvidence) -> Self {
        let p = |t: Option<mint_audit::evidence::stats::Test>| t.map_or(f64::NAN, |t| t.p_value);
        let (rank_z, rank_p, auc) =
            e.overall_rank.map_or((f64::NAN, f64::NAN, f64::NAN), |(t, auc)| (t.statistic, t.p_value, auc));
        mint_cohort_evidence {
            audited: e.audited,
            flagged: e.flagged,
            member_fraction: e.member_fraction.estimate,
            member_fraction_low: e.member_fraction.low,
            member_fraction_high: e.member_fraction.high,
            windows: e.windows,
            window_progress: e.window_progress,
            window_binomial_p: p(e.last_window[0]),
            window_rank_p: p(e.last_window[1]),
            binomial_alarms: e.alarms[0],
            rank_alarms: e.alarms[1],
            overall_rank_z: rank_z,
            overall_rank_p: rank_p,
            overall_auc: auc,
        }
    }
}

/// Reads the evidence on one cohort. A cohort the configuration does not declare is
/// `MINT_ERR_INVALID_ARGUMENT`. Since ABI 1.2.
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_cohort_evidence(
    auditor: *const mint_auditor,
    cohort: u32,
    out: *mut mint_cohort_evidence,
) -> mint_status {
    boundary("mint_auditor_cohort_evidence", || {
        // SAFETY: NULL (refused) or valid for the call, per the header.
        let (a, out) = unsafe { (auditor_ref(auditor)?, try_mut(out, "out")?) };
        let evidence = a.evidence(Cohort::from_number(cohort)).map_err(undeclared)?;
        *out = evidence.into();
        Ok(())
    })
}

/// The anytime-valid evidence on one cohort (docs/evidence.md says how each is built and what
/// it assumes): read it as often as you like, after every sample if you wish; a non-member
/// cohort's e-value ever reaches 1/alpha with probability at most alpha. NaN where a value
/// cannot exist (no calibration; the scores test on the `reference` cohort itself, or without
/// one). Since ABI 1.5.
#[repr(C)]
#[derive(Default)]
#[allow(non_camel_case_types)]
pub struct mint_cohort_anytime {
    /// E-value of the cohort's flags against the calibrated FPR's upper bound (1 at start).
    pub flags_e_value: f64,
    /// E-value of the cohort's scores against the `reference` cohort's (1 at start).
    pub scores_e_value: f64,
    /// `min(1, 1 / the largest e-value so far)`, per test: p-values valid at every look.
    pub flags_p_value: f64,
    pub scores_p_value: f64,
    /// Share of members in the cohort: a 95% confidence sequence, valid at every look.
    pub member_fraction_low: f64,
    pub member_fraction_high: f64,
    /// The non-membership certificate: fewer than this share of the cohort's samples were
    /// training members, at 95%; NaN when the head cannot certify (uncalibrated, or its TPR
    /// not surely above its FPR).
    pub certificate: f64,
}

impl From<mint_audit::evidence::AnytimeEvidence> for mint_cohort_anytime {
    fn from(a: mint_audit::evidence::AnytimeEvidence) -> Self {
        mint_cohort_anytime {
            flags_e_value: a.e_value[0],
            scores_e_value: a.e_value[1],
            flags_p_value: a.p_value[0],
            scores_p_value: a.p_value[1],
            member_fraction_low: a.member_fraction.0,
            member_fraction_high: a.member_fraction.1,
            certificate: a.certificate.unwrap_or(f64::NAN),
        }
    }
}

/// Reads the anytime-valid evidence on one cohort. A cohort the configuration does not
/// declare is `MINT_ERR_INVALID_ARGUMENT`. Since ABI 1.5.
#[no_mangle]
pub unsafe extern "C" fn mint_auditor_cohort_anytime(
    auditor: *const mint_auditor,
    cohort: u32,
    out: *mut mint_cohort_anytime,
) -> mint_status {
    boundary("mint_auditor_cohort_anytime", || {
        // SAFETY: NULL (refused) or valid for the call, per the header.
        let (a, out) = unsafe { (auditor_ref(auditor)?, try_mut(out, "out")?) };
        let evidence = a.evidence(Cohort::from_number(cohort)).map_err(undeclared)?;
        *out = evidence.anytime.into();
        Ok(())
    })
}

/// Reading a cohort that is not declared is a bad argument (nothing was lost).
fn undeclared(e: mint_audit::Error) -> Failure {
    Failure::new(MINT_ERR_INVALID_ARGUMENT, e.to_string())
}
