//! The main job's program (examples/serving_demo.c), built with the system compiler against the
//! installed library: it audits the shipped model with the Vanilla head, and switches to the CNN
//! head (full maps through the CPU backend plugin) by configuration alone.

mod common;

use std::process::Command;

use common::*;

#[test]
fn the_serving_demo_runs_both_heads_by_configuration_alone() {
    if !ready("the demo test", &[CC, PKG_CONFIG]) {
        return;
    }
    let dir = scratch("demo");
    let exe = dir.join("serving_demo");
    compile_c(&[&repo().join("examples/serving_demo.c")], &exe, &[]);
    let models = repo().join("models/fmnist-memorizing");
    for (config, kind) in [("auditor.json", "vanilla"), ("auditor-cnn.json", "cnn")] {
        let out = run(Command::new(&exe)
            .arg(models.join(config))
            .arg(models.join("demo-members-idx3-ubyte"))
            .arg(models.join("demo-non-members-idx3-ubyte")));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("accounting: submitted 1000 = audited 1000 + dropped 0"), "{config}:\n{stdout}");
        assert!(stdout.contains(&format!("head_kind=\"{kind}\"")), "{config}:\n{stdout}");
        assert!(stdout.contains("known members        500 requests,   500 scored"), "{stdout}");
    }
}
