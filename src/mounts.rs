//! `--mount MOUNTPOINT=APP` and `--manage-script-name`: which app serves a
//! request, and where SCRIPT_NAME ends and PATH_INFO begins, as uWSGI
//! decides (core/protocol.c `uwsgi_parse_vars`, core/utils.c
//! `uwsgi_get_app_id`).
//!
//! With `--manage-script-name`, the longest mountpoint that is a prefix of
//! PATH_INFO (and ends at a `/` or at its end: `/app` does not take
//! `/apple`) becomes SCRIPT_NAME and is cut from PATH_INFO. The app is the
//! one mounted at SCRIPT_NAME exactly; any other request goes to the
//! default app: `--module`/`--wsgi-file` if given, else the first mount.
//!
//! Pure: byte strings in, indexes out. The apps themselves live with the
//! worker.

/// Mountpoints, in the order given (index = the app's index).
#[derive(Debug, Default)]
pub struct Mounts {
    points: Vec<Vec<u8>>,
    manage_script_name: bool,
}

/// Where a request goes.
#[derive(Debug, PartialEq, Eq)]
pub struct Choice {
    /// Index of the mounted app, None for the default app.
    pub app: Option<usize>,
    /// With `--manage-script-name`: how many bytes of PATH_INFO are the
    /// SCRIPT_NAME (the mountpoint matched).
    pub split: Option<usize>,
}

impl Mounts {
    /// `mountpoints` as parsed (no trailing '/'; "" for the root).
    pub fn new(mountpoints: &[&str], manage_script_name: bool) -> Mounts {
        Mounts {
            points: mountpoints
                .iter()
                .map(|m| m.trim_end_matches('/').as_bytes().to_vec())
                .collect(),
            manage_script_name,
        }
    }

    /// Choose the app for a request with this (decoded) PATH_INFO and the
    /// SCRIPT_NAME a proxy sent (empty over HTTP).
    pub fn choose(&self, path_info: &[u8], script_name: &[u8]) -> Choice {
        let mut split = None;
        let mut script = script_name;
        if self.manage_script_name && !path_info.is_empty() {
            let best = self
                .points
                .iter()
                .filter(|m| {
                    !m.is_empty()
                        && path_info.starts_with(m)
                        && (path_info.len() == m.len() || path_info[m.len()] == b'/')
                })
                .max_by_key(|m| m.len());
            if let Some(m) = best {
                split = Some(m.len());
                script = m;
            }
        }
        let script = script.strip_suffix(b"/").unwrap_or(script);
        Choice {
            app: self.points.iter().position(|m| m.as_slice() == script),
            split,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_at_a_slash() {
        let m = Mounts::new(&["/app", "/app/admin", "/api/"], true);
        assert_eq!(
            m.choose(b"/app/x", b""),
            Choice {
                app: Some(0),
                split: Some(4)
            }
        );
        assert_eq!(
            m.choose(b"/app/admin/y", b""),
            Choice {
                app: Some(1),
                split: Some(10)
            }
        );
        assert_eq!(
            m.choose(b"/app", b""),
            Choice {
                app: Some(0),
                split: Some(4)
            }
        );
        assert_eq!(
            m.choose(b"/api/v1", b""),
            Choice {
                app: Some(2),
                split: Some(4)
            }
        );
        assert_eq!(
            m.choose(b"/apple", b""),
            Choice {
                app: None,
                split: None
            }
        );
        assert_eq!(
            m.choose(b"/", b""),
            Choice {
                app: None,
                split: None
            }
        );
    }

    #[test]
    fn without_manage_script_name_the_proxy_decides() {
        let m = Mounts::new(&["/app", "/other"], false);
        assert_eq!(
            m.choose(b"/x", b"/other"),
            Choice {
                app: Some(1),
                split: None
            }
        );
        assert_eq!(
            m.choose(b"/app/x", b""),
            Choice {
                app: None,
                split: None
            }
        );
        assert_eq!(
            m.choose(b"/x", b"/nowhere"),
            Choice {
                app: None,
                split: None
            }
        );
    }
}
