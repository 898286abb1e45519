//! The kernel command line (`/proc/cmdline`), the fallback source of the CDH settings when
//! no config file is given.

use std::{io, path::Path};

/// The `key=value` parameters of a kernel command line. Parameters without `=` carry no
/// setting for us and are skipped; quoting is not interpreted (as upstream).
///
/// A repeated key is resolved the way upstream resolves that parameter: [`Self::first`]
/// for the CDH's own (`agent.aa_kbc_params`, `cdh.kbs_resources`: upstream stops at the
/// first match), [`Self::last`] for image-rs's `agent.*` image parameters (upstream
/// collects them into a map, so a later one replaces an earlier one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KernelCmdline {
    params: Vec<(String, String)>,
}

impl KernelCmdline {
    pub(crate) fn parse(text: &str) -> Self {
        let params = text
            .split_ascii_whitespace()
            .filter_map(|param| param.split_once('='))
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        Self { params }
    }

    /// Reads `path`; a missing file is an empty command line.
    pub(crate) fn read(path: &Path) -> io::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e),
        }
    }

    /// The value of the first `key=` parameter.
    pub(crate) fn first(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of the last `key=` parameter.
    pub(crate) fn last(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// How many `key=` parameters there are.
    pub(crate) fn count(&self, key: &str) -> usize {
        self.params.iter().filter(|(k, _)| k == key).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_parameters() {
        let cmdline = KernelCmdline::parse(
            "BOOT_IMAGE=/vmlinuz ro quiet agent.aa_kbc_params=cc_kbc::http://1.2.3.4:8080\n \
             agent.https_proxy=http://p:3128 console=ttyS0,115200n8 flag agent.empty=",
        );
        assert_eq!(
            cmdline.first("agent.aa_kbc_params"),
            Some("cc_kbc::http://1.2.3.4:8080")
        );
        assert_eq!(cmdline.first("agent.https_proxy"), Some("http://p:3128"));
        assert_eq!(cmdline.first("agent.empty"), Some(""));
        assert_eq!(cmdline.first("flag"), None);
        assert_eq!(cmdline.first("ro"), None);
        assert_eq!(cmdline.first("agent"), None);
        assert_eq!(cmdline.last("agent"), None);
        // values may contain '='
        assert_eq!(KernelCmdline::parse("a=b=c").first("a"), Some("b=c"));
    }

    #[test]
    fn repeated_keys_keep_every_occurrence() {
        let cmdline = KernelCmdline::parse("k=1 other=x k=2\nk=3");
        assert_eq!(cmdline.first("k"), Some("1"));
        assert_eq!(cmdline.last("k"), Some("3"));
        assert_eq!(cmdline.count("k"), 3);
        assert_eq!(cmdline.count("other"), 1);
        assert_eq!(cmdline.count("absent"), 0);
    }

    #[test]
    fn missing_file_is_empty_but_other_errors_are_not() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            KernelCmdline::read(&dir.path().join("absent")).unwrap(),
            KernelCmdline::default()
        );
        assert!(KernelCmdline::read(dir.path()).is_err());
        std::fs::write(dir.path().join("cmdline"), b"a=1\n").unwrap();
        assert_eq!(
            KernelCmdline::read(&dir.path().join("cmdline"))
                .unwrap()
                .first("a"),
            Some("1")
        );
    }
}
