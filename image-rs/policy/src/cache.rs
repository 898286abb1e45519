//! Documents and keys fetched for the policy (the policy itself, registries.d, public
//! keys), kept for a bounded time: after the TTL they are fetched and parsed again, so a
//! rotated key or a tightened policy takes effect (upstream cached KBS resources forever).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image_rs::{LocalResources, ResourceProvider};

/// Parsed values by URI, each valid for `ttl` after it was fetched.
#[derive(Debug)]
pub(crate) struct TtlCache<T> {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Arc<T>)>>,
}

impl<T> TtlCache<T> {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<T>)>> {
        // a cache: a panic elsewhere while holding it leaves it usable
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached value of `key` if still fresh, else the result of `load` (cached on
    /// success; failures are not cached).
    pub(crate) async fn get_or_load<F, Fut, E>(&self, key: &str, load: F) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some((fetched, value)) = self.lock().get(key) {
            if fetched.elapsed() < self.ttl {
                return Ok(value.clone());
            }
        }
        let value = Arc::new(load().await?);
        let mut entries = self.lock();
        let ttl = self.ttl;
        entries.retain(|_, (fetched, _)| fetched.elapsed() < ttl);
        entries.insert(key.to_string(), (Instant::now(), value.clone()));
        Ok(value)
    }
}

/// Reads resources named in the configuration and the policy: `kbs://` URIs through the
/// provider (the CDH's KBS client), `file://` URLs and absolute paths from the local
/// filesystem.
#[derive(Debug, Clone)]
pub(crate) struct Resources {
    provider: Arc<dyn ResourceProvider>,
}

impl Resources {
    pub(crate) fn new(provider: Arc<dyn ResourceProvider>) -> Self {
        Self { provider }
    }

    pub(crate) async fn fetch(&self, uri: &str) -> Result<Vec<u8>, String> {
        let result = if uri.starts_with("kbs://") || uri.starts_with("kbs+") {
            self.provider.get_resource(uri).await
        } else {
            LocalResources.get_resource(uri).await
        };
        result.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn values_are_reused_within_the_ttl_and_refetched_after() {
        let loads = AtomicUsize::new(0);
        let load = || async { Ok::<_, String>(loads.fetch_add(1, Ordering::SeqCst)) };
        let cache = TtlCache::new(Duration::from_millis(200));
        assert_eq!(*cache.get_or_load("a", load).await.unwrap(), 0);
        assert_eq!(*cache.get_or_load("a", load).await.unwrap(), 0);
        assert_eq!(*cache.get_or_load("b", load).await.unwrap(), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(*cache.get_or_load("a", load).await.unwrap(), 2);
        let failing = TtlCache::<u8>::new(Duration::from_secs(60));
        assert!(failing
            .get_or_load("x", || async { Err("down".to_string()) })
            .await
            .is_err());
        assert_eq!(
            *failing
                .get_or_load("x", || async { Ok::<_, String>(7) })
                .await
                .unwrap(),
            7
        );
        let uncached = TtlCache::new(Duration::ZERO);
        assert_eq!(*uncached.get_or_load("a", load).await.unwrap(), 3);
        assert_eq!(*uncached.get_or_load("a", load).await.unwrap(), 4);
    }

    #[tokio::test]
    async fn kbs_uris_need_the_provider_and_files_are_read_locally() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, b"k").unwrap();
        let resources = Resources::new(Arc::new(LocalResources));
        assert_eq!(resources.fetch(file.to_str().unwrap()).await.unwrap(), b"k");
        assert_eq!(
            resources
                .fetch(&format!("file://{}", file.display()))
                .await
                .unwrap(),
            b"k"
        );
        assert!(resources
            .fetch("kbs:///default/key/1")
            .await
            .unwrap_err()
            .contains("provider"));
        assert!(resources.fetch("/does/not/exist").await.is_err());
    }
}
