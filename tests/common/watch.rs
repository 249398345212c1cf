//! What a watch saw, in the order the API server sent it: a background
//! `kubectl get -w --output-watch-events -o json` as admin. Tests read ordering from it (this
//! happened before that) instead of from their own clock.

use std::io::BufReader;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::{kubeconfig, kubectl_bin};

pub struct Watch {
    child: Child,
    seen: Arc<Mutex<Vec<Value>>>,
}

impl Watch {
    /// Watches what `args` select (`-n NS` or `-A`, the resource, selectors).
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(kubectl_bin())
            .arg("--kubeconfig")
            .arg(kubeconfig("admin"))
            .args(["get", "-w", "--output-watch-events", "-o", "json"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl get -w");
        let out = BufReader::new(child.stdout.take().unwrap());
        let seen = Arc::new(Mutex::new(vec![]));
        let sink = seen.clone();
        std::thread::spawn(move || {
            for ev in serde_json::Deserializer::from_reader(out).into_iter::<Value>() {
                let Ok(ev) = ev else { return };
                sink.lock().unwrap().push(ev);
            }
        });
        Watch { child, seen }
    }

    /// The events so far, in order.
    pub fn events(&self) -> Vec<Value> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
