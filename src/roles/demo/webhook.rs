//! `xentinel demo --webhook`: the migration webhook in the demo's process, on
//! its cluster, with a fresh token and job log in a temporary directory
//! (mode 0700; the token file 0600, removed when the demo ends).

use std::path::PathBuf;

use crate::config::WebhookConfig;
use crate::http;
use crate::migration::{self, EngineOptions, ExecutorChoice};
use crate::roles::webhook::read_token;
use crate::sim::SharedCluster;

/// Where the demo's webhook listens and keeps its state.
#[derive(Debug, Clone)]
pub struct DemoWebhook {
    /// `host:port` it listens on.
    pub addr: String,
    /// Its bearer token file, unless it runs without auth.
    pub token_file: Option<PathBuf>,
    /// Its SQLite job log.
    pub db_path: PathBuf,
    /// Removes a token file the demo made when the last copy is dropped.
    _made_token: Option<std::sync::Arc<MadeToken>>,
}

/// A token file the demo wrote (mode 0600): removed when the demo ends.
#[derive(Debug)]
struct MadeToken(PathBuf);

impl MadeToken {
    fn write(path: PathBuf, token: &str) -> std::io::Result<MadeToken> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // A stale file of an earlier run with this pid may be anybody's: replace it.
        let _ = std::fs::remove_file(&path);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(token.as_bytes())?;
        Ok(MadeToken(path))
    }
}

impl Drop for MadeToken {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0) {
            log::warn!(
                "cannot remove the demo's token file {}: {e}",
                self.0.display()
            );
        }
    }
}

fn random_token() -> anyhow::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 24];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// The demo's `--webhook.*` flags.
pub struct Flags<'a> {
    pub listen_address: &'a str,
    pub token_file: Option<&'a std::path::Path>,
    pub insecure_no_auth: bool,
}

/// Starts the webhook on `cluster` (sim executor); it plans from
/// `prometheus_url` when given, else from the model.
pub async fn spawn(
    cluster: SharedCluster,
    a: Flags<'_>,
    prometheus_url: Option<String>,
) -> anyhow::Result<DemoWebhook> {
    let dir = std::env::temp_dir().join(format!("xentinel-demo-{}", std::process::id()));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
    }
    let mut made = None;
    let (token, token_file) = if a.insecure_no_auth {
        (None, None)
    } else if let Some(p) = a.token_file {
        (Some(read_token(p)?), Some(p.to_path_buf()))
    } else {
        let p = dir.join("webhook.token");
        let m = MadeToken::write(p.clone(), &(random_token()? + "\n"))?;
        made = Some(std::sync::Arc::new(m));
        println!("webhook bearer token file: {}", p.display());
        (Some(read_token(&p)?), Some(p))
    };
    let o = EngineOptions {
        executor: ExecutorChoice::Sim(cluster),
        prometheus_url,
        exporters: vec![],
        db_path: dir.join("jobs.sqlite"),
        dry_run: false,
    };
    let (router, _) = migration::start(&o, &WebhookConfig::default(), token)?;
    let listener = http::bind(a.listen_address).await?;
    let addr = listener.local_addr()?.to_string();
    println!(
        "migration webhook: http://{addr}/alerts (job log {})",
        o.db_path.display()
    );
    tokio::spawn(async move {
        let sec = http::webconfig::WebSecurity::default();
        if let Err(e) = http::serve(listener, router, sec, crate::signals::shutdown()).await {
            log::error!("webhook: {e}");
        }
    });
    Ok(DemoWebhook {
        addr,
        token_file,
        db_path: o.db_path,
        _made_token: made,
    })
}
