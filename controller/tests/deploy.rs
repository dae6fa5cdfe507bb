//! The manifests and the image recipe agree with each other: `kubectl apply -k
//! controller/deploy` installs every manifest but the samples, with the image the Deployment
//! names; the Deployment serves the dashboard where the Containerfile puts it; the sweep's
//! Indexed Job has as many shards as completions, and its merge step reads them all.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_sequence()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap()
}

#[test]
fn the_kustomization_installs_every_manifest_but_the_samples() {
    let k = &docs("controller/deploy/kustomization.yaml")[0];
    let mut resources = strings(&k["resources"]);
    resources.sort_unstable();
    let mut files: Vec<String> = std::fs::read_dir(repo().join("controller/deploy"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| {
            Path::new(f).extension().is_some_and(|e| e == "yaml")
                && f != "kustomization.yaml"
                && f != "samples.yaml"
        })
        .collect();
    files.sort_unstable();
    assert_eq!(resources, files);

    let deployment = docs("controller/deploy/deployment.yaml");
    let container =
        &of_kind(&deployment, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    let image = container["image"].as_str().unwrap();
    let name = image.rsplit_once(':').unwrap().0;
    assert_eq!(k["images"][0]["name"].as_str(), Some(name));
}

#[test]
fn the_deployment_serves_the_dashboard_the_image_holds() {
    let deployment = docs("controller/deploy/deployment.yaml");
    let container =
        &of_kind(&deployment, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    let args = strings(&container["args"]);
    let i = args.iter().position(|a| *a == "--static-dir").unwrap();
    assert_eq!(args[i + 1], "/srv/dashboard");
    let recipe = std::fs::read_to_string(repo().join("Containerfile")).unwrap();
    assert!(recipe.contains("COPY --from=dashboard /out /srv/dashboard"));
    assert!(recipe.contains(r#"CMD ["run", "--static-dir", "/srv/dashboard"]"#));
}

#[test]
fn the_sweep_job_runs_n_shards_and_the_merge_reads_them_all() {
    let job = docs("simulator/deploy/sweep-job.yaml");
    let spec = &of_kind(&job, "Job")["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let n = spec["completions"].as_u64().unwrap();
    let args = strings(&spec["template"]["spec"]["containers"][0]["args"]);
    assert_eq!(args[0], "sweep");
    let i = args.iter().position(|a| *a == "--shard").unwrap();
    assert_eq!(args[i + 1], format!("$(JOB_COMPLETION_INDEX)/{n}"));

    let merge = docs("simulator/deploy/sweep-merge-job.yaml");
    let args =
        strings(&of_kind(&merge, "Job")["spec"]["template"]["spec"]["containers"][0]["args"]);
    let files: Vec<String> = (0..n)
        .map(|i| format!("/results/shard-{i}-of-{n}.jsonl"))
        .collect();
    assert_eq!(args[0], "merge");
    assert_eq!(args[1..=n as usize], files);
}
