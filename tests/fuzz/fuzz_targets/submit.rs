//! Any tensor descriptors through `mint_auditor_submit` and, with token selections (lengths
//! or masks of any values) and token ids for sequences, `mint_auditor_submit_tokens`, the C entry points
//! vendors call: a status, never a panic, a hang or a read outside the buffer the descriptors
//! may address.
#![no_main]

use std::ffi::CString;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mint_audit_ffi::*;

/// Elements of the one buffer every descriptor points into.
const BUFFER: usize = 1 << 20;

struct Shared(*mut mint_auditor);
// SAFETY: an auditor is usable from any thread (include/mint_audit.h).
unsafe impl Send for Shared {}
// SAFETY: as for `Send`.
unsafe impl Sync for Shared {}

fn auditor() -> *const mint_auditor {
    static AUDITOR: OnceLock<Shared> = OnceLock::new();
    AUDITOR
        .get_or_init(|| {
            let root =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/fmnist-memorizing/auditor.json");
            let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&root).unwrap()).unwrap();
            config.as_object_mut().unwrap().remove("metrics");
            // Relative paths resolve against the current directory for mint_auditor_new.
            let dir = root.parent().unwrap();
            config["model"]["onnx"] = dir.join("model.onnx").display().to_string().into();
            config["head"]["path"] = dir.join("head.onnx").display().to_string().into();
            let json = CString::new(config.to_string()).unwrap();
            let mut a = std::ptr::null_mut();
            // SAFETY: a valid NUL-terminated configuration and out-pointer.
            let status = unsafe { mint_auditor_new(json.as_ptr(), std::ptr::null(), &mut a) };
            assert_eq!(status, MINT_OK);
            Shared(a)
        })
        .0
}

/// Elements a descriptor addresses, as the caller must provide; `None` past the buffer.
fn extent(shape: &[i64], strides: Option<&[i64]>) -> Option<usize> {
    let shape: Vec<usize> = shape.iter().map(|&d| usize::try_from(d).ok()).collect::<Option<_>>()?;
    match strides {
        None => shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)),
        Some(_) if shape.contains(&0) => Some(0),
        Some(st) => {
            let st: Vec<usize> = st.iter().map(|&s| usize::try_from(s).ok()).collect::<Option<_>>()?;
            shape.iter().zip(&st).try_fold(1usize, |a, (&d, &s)| (d - 1).checked_mul(s)?.checked_add(a))
        }
    }
    .filter(|&e| e <= BUFFER)
}

fuzz_target!(|data: &[u8]| {
    static DATA: OnceLock<Vec<f32>> = OnceLock::new();
    let buffer = DATA.get_or_init(|| (0..BUFFER).map(|i| (i % 97) as f32 / 97.0).collect());
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next().unwrap_or(0);
    let n = usize::from(next() % 9);
    let n_taps = usize::from(next() % 7);
    let mut shapes = vec![[0i64; 4]; n_taps];
    let mut strides = vec![[0i64; 4]; n_taps];
    let mut taps = Vec::with_capacity(n_taps);
    let mut tokens = Vec::with_capacity(n_taps);
    let (mut lengths, mut masks) = (vec![[0i64; 256]; n_taps], vec![Vec::new(); n_taps]);
    let mut targets = vec![Vec::new(); n_taps];
    for t in 0..n_taps {
        let (dtype, form, layout, rank) =
            (u32::from(next() % 4), u32::from(next() % 5), u32::from(next() % 6), next() % 6);
        for d in 0..4 {
            // Dimensions up to 249 (every shipped tap's), the odd huge or negative one.
            shapes[t][d] = match next() {
                250 => -1,
                251 => 1 << 40,
                252 => i64::MAX,
                b => i64::from(b),
            };
            strides[t][d] = i64::from(next() % 64);
        }
        let rank = usize::from(rank);
        let strided = layout == MINT_LAYOUT_STRIDED;
        let shape = &shapes[t][..rank.min(4)];
        if extent(shape, strided.then(|| &strides[t][..rank.min(4)])).is_none() && rank <= 4 {
            return; // the C contract: the caller provides every element it describes
        }
        // Which tokens count: none given, lengths (any values, the odd negative or huge one)
        // or a mask of any bytes, sized as the C contract says (N values, N × T bytes).
        let (batch, positions) = match (layout, rank >= 3) {
            (_, false) => (0, 0),
            (MINT_LAYOUT_NTC, true) => (shapes[t][0], shapes[t][1]),
            _ => (shapes[t][0], shapes[t][2]),
        };
        let selection = next() % 4;
        let fits = (0..=256).contains(&batch) && (0..=4096).contains(&positions);
        let (mut l, mut m, mut ids) = (std::ptr::null(), std::ptr::null(), std::ptr::null());
        if fits && selection == 1 {
            for v in lengths[t].iter_mut() {
                *v = match next() {
                    255 => -1,
                    254 => i64::MAX,
                    b => i64::from(b % 64),
                };
            }
            l = lengths[t].as_ptr();
        } else if fits && selection == 2 {
            let pattern = next();
            masks[t] = (0..batch * positions).map(|i| u8::from((pattern >> (i % 8)) & 1 == 1)).collect();
            m = masks[t].as_ptr();
        } else if fits && selection == 3 {
            // Token ids of any values, sized N × T.
            let pattern = i64::from(next());
            targets[t] = (0..batch * positions).map(|i| (i * pattern) % 300 - 1).collect();
            ids = targets[t].as_ptr();
        }
        tokens.push(mint_tokens { lengths: l, mask: m, targets: ids });
        taps.push(mint_tensor {
            data: buffer.as_ptr().cast(),
            dtype,
            form,
            layout,
            rank,
            shape: shapes[t].as_ptr(),
            strides: strides[t].as_ptr(),
        });
    }
    let ids: Vec<u64> = (0..n as u64).collect();
    let mut report = mint_submit_report::default();
    let status = if next() % 2 == 0 {
        // SAFETY: every pointer is valid for what the descriptors address (checked above).
        unsafe { mint_auditor_submit(auditor(), ids.as_ptr(), n, taps.as_ptr(), taps.len(), &mut report) }
    } else {
        // SAFETY: as above, and every token selection holds what its descriptor's N and T ask.
        unsafe {
            mint_auditor_submit_tokens(
                auditor(),
                0,
                ids.as_ptr(),
                n,
                taps.as_ptr(),
                tokens.as_ptr(),
                taps.len(),
                &mut report,
            )
        }
    };
    assert!(report.accepted <= report.chosen && report.chosen <= n, "{status:?}");
});
