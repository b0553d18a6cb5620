//! Manual blocks: durable (one JSON file, rewritten atomically), expiring, capped.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::Duration,
};

use tidegate_base::Cidr;
use tidegate_threat::policy::enforce::ManualBlock;

/// Most blocks held at once.
pub const MAX_BLOCKS: usize = 1024;
/// Longest block.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 86_400);
/// Longest reason text.
pub const MAX_REASON: usize = 500;

/// The blocks and their file.
#[derive(Debug)]
pub struct BlockStore {
    path: Option<PathBuf>,
    blocks: Mutex<Vec<ManualBlock>>,
}

impl BlockStore {
    /// Blocks kept in memory only (tests, `analyze`).
    pub fn in_memory() -> BlockStore {
        BlockStore {
            path: None,
            blocks: Mutex::new(Vec::new()),
        }
    }

    /// Loads `path` (absent: no blocks).
    pub fn open(path: &Path) -> Result<BlockStore, String> {
        let blocks = match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| format!("{}: not a block list: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
        };
        Ok(BlockStore {
            path: Some(path.to_path_buf()),
            blocks: Mutex::new(blocks),
        })
    }

    fn save(&self, blocks: &[ManualBlock]) -> Result<(), String> {
        let Some(p) = &self.path else { return Ok(()) };
        let json = serde_json::to_vec_pretty(blocks).map_err(|e| e.to_string())?;
        tidegate_base::durable::write_durable(p, &json)
            .map_err(|e| format!("{}: cannot write: {e}", p.display()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ManualBlock>> {
        self.blocks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Blocks not lapsed at `now_ns`.
    pub fn live(&self, now_ns: u64) -> Vec<ManualBlock> {
        self.lock()
            .iter()
            .filter(|b| b.expires_ns > now_ns)
            .cloned()
            .collect()
    }

    /// Adds a block; durable before it returns.
    pub fn add(
        &self,
        cidr: Cidr,
        ttl: Duration,
        reason: String,
        user: &str,
        now_ns: u64,
    ) -> Result<ManualBlock, String> {
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(format!(
                "expires_secs must be between 1 and {}",
                MAX_TTL.as_secs()
            ));
        }
        if reason.chars().count() > MAX_REASON || reason.chars().any(char::is_control) {
            return Err(format!(
                "reason must be at most {MAX_REASON} characters without control characters"
            ));
        }
        let mut g = self.lock();
        g.retain(|b| b.expires_ns > now_ns);
        if g.len() >= MAX_BLOCKS {
            return Err(format!("already {MAX_BLOCKS} blocks; lift some first"));
        }
        let mut id = [0u8; 6];
        getrandom::fill(&mut id).map_err(|e| e.to_string())?;
        let b = ManualBlock {
            id: id.iter().map(|x| format!("{x:02x}")).collect(),
            cidr,
            expires_ns: now_ns.saturating_add(ttl.as_nanos() as u64),
            reason,
            created_by: user.to_string(),
            created_ns: now_ns,
        };
        let mut next = g.clone();
        next.push(b.clone());
        self.save(&next)?;
        *g = next;
        Ok(b)
    }

    /// Removes block `id`.
    pub fn remove(&self, id: &str) -> Result<ManualBlock, String> {
        let mut g = self.lock();
        let i = g
            .iter()
            .position(|b| b.id == id)
            .ok_or_else(|| format!("no block {id:?}"))?;
        let mut next = g.clone();
        let b = next.remove(i);
        self.save(&next)?;
        *g = next;
        Ok(b)
    }

    /// Removes and returns the blocks lapsed at `now_ns`.
    pub fn expire(&self, now_ns: u64) -> Vec<ManualBlock> {
        let mut g = self.lock();
        let (gone, keep): (Vec<_>, Vec<_>) =
            g.iter().cloned().partition(|b| b.expires_ns <= now_ns);
        if gone.is_empty() {
            return gone;
        }
        if let Err(e) = self.save(&keep) {
            tracing::error!(error = %e, "cannot rewrite the block list; lapsed blocks stay listed (they no longer apply)");
        }
        *g = keep;
        gone
    }
}
