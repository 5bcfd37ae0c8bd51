use super::*;
use crate::config::{StaticExpires, StaticMap};

struct Tree(PathBuf);

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// root/static/{a.css, sub/index.html, dir/, link-out -> root/secret,
/// link-in -> a.css}, root/secret/passwd, root/robots.txt
fn tree(name: &str) -> Tree {
    let root = std::env::temp_dir().join(format!("statics-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let s = root.join("static");
    std::fs::create_dir_all(s.join("sub")).unwrap();
    std::fs::create_dir_all(s.join("dir")).unwrap();
    std::fs::create_dir_all(root.join("secret")).unwrap();
    std::fs::write(s.join("a.css"), "body{}").unwrap();
    std::fs::write(s.join("a.css.gz"), "GZ").unwrap();
    std::fs::write(s.join("sub/index.html"), "<p>").unwrap();
    std::fs::write(s.join("x.py"), "print()").unwrap();
    std::fs::write(root.join("secret/passwd"), "root:x").unwrap();
    std::fs::write(root.join("robots.txt"), "User-agent: *").unwrap();
    std::os::unix::fs::symlink(root.join("secret"), s.join("link-out")).unwrap();
    std::os::unix::fs::symlink("a.css", s.join("link-in")).unwrap();
    Tree(root)
}

fn statics(opts: StaticOptions) -> Statics {
    Statics::new(&opts, false).unwrap().0.expect("configured")
}

fn map(mount: &str, path: &Path) -> StaticMap {
    StaticMap {
        mount: mount.into(),
        path: path.to_path_buf(),
        append_full_path: false,
    }
}

fn body(found: Option<Found>) -> Option<String> {
    found.map(|f| std::fs::read_to_string(&f.path).unwrap())
}

#[test]
fn maps_serve_files_and_never_leave_the_root() {
    let t = tree("maps");
    let s = statics(StaticOptions {
        maps: vec![
            map("/static", &t.0.join("static")),
            map("/robots.txt", &t.0.join("robots.txt")),
        ],
        ..Default::default()
    });
    assert_eq!(
        body(s.find(b"/static/a.css", b"GET")).as_deref(),
        Some("body{}")
    );
    assert_eq!(
        body(s.find(b"/static/link-in", b"HEAD")).as_deref(),
        Some("body{}")
    );
    assert_eq!(
        body(s.find(b"/robots.txt", b"GET")).as_deref(),
        Some("User-agent: *")
    );
    for evil in [
        &b"/static/../secret/passwd"[..],
        b"/static/../../../../etc/passwd",
        b"/static/link-out/passwd",
        b"/static//etc/passwd",
        b"/static/a.css\0.png",
        b"/static/",
        b"/static/dir",
        b"/static/missing",
        b"/other/a.css",
    ] {
        assert!(
            s.find(evil, b"GET").is_none(),
            "{}",
            String::from_utf8_lossy(evil)
        );
    }
    assert!(
        s.find(b"/static/a.css", b"POST").is_none(),
        "POST goes to the app"
    );
}

#[test]
fn safe_dirs_index_and_skip_ext() {
    let t = tree("safe");
    let s = statics(StaticOptions {
        maps: vec![map("/static", &t.0.join("static"))],
        safe: vec![t.0.join("secret")],
        index: vec!["index.html".into()],
        skip_ext: vec![".py".into()],
        ..Default::default()
    });
    assert_eq!(
        body(s.find(b"/static/link-out/passwd", b"GET")).as_deref(),
        Some("root:x")
    );
    assert_eq!(body(s.find(b"/static/sub", b"GET")).as_deref(), Some("<p>"));
    assert_eq!(
        body(s.find(b"/static/sub/", b"GET")).as_deref(),
        Some("<p>")
    );
    assert!(
        s.find(b"/static/dir/", b"GET").is_none(),
        "no index: the app"
    );
    assert!(s.find(b"/static/x.py", b"GET").is_none());
}

#[test]
fn check_static_and_map2() {
    let t = tree("check");
    let s = statics(StaticOptions {
        check: vec![t.0.join("static")],
        maps: vec![StaticMap {
            mount: "/static".into(),
            path: t.0.clone(),
            append_full_path: true,
        }],
        ..Default::default()
    });
    assert_eq!(body(s.find(b"/a.css", b"GET")).as_deref(), Some("body{}"));
    assert_eq!(
        body(s.find(b"/static/sub/index.html", b"GET")).as_deref(),
        Some("<p>")
    );
    assert!(s.find(b"/../secret/passwd", b"GET").is_none());
}

#[test]
fn missing_roots_are_skipped_and_named() {
    let (s, notes) = Statics::new(
        &StaticOptions {
            maps: vec![map("/s", Path::new("/nonexistent/static"))],
            ..Default::default()
        },
        false,
    )
    .unwrap();
    assert!(s.unwrap().maps.is_empty());
    assert!(notes[0].contains("/nonexistent/static"), "{notes:?}");
    assert!(Statics::new(&StaticOptions::default(), false)
        .unwrap()
        .0
        .is_none());
}

fn ask<'a>() -> Ask<'a> {
    Ask {
        head_only: false,
        path_info: b"/static/a.css",
        uri: b"/static/a.css?v=1",
        if_modified_since: None,
        range: None,
        if_range: None,
        accept_encoding: None,
        now: 1_000_000,
    }
}

fn header<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn responses_follow_uwsgi() {
    let t = tree("respond");
    let s = statics(StaticOptions {
        maps: vec![map("/static", &t.0.join("static"))],
        expires: vec![StaticExpires {
            on: ExpiresOn::ContentType,
            pattern: "text/css".into(),
            seconds: 60,
            from_mtime: false,
        }],
        gzip_all: true,
        ..Default::default()
    });
    let found = || s.find(b"/static/a.css", b"GET").unwrap();
    let mtime = found().meta.mtime();
    let r = s.respond(found(), &ask());
    assert_eq!((r.status, r.body_len), (200, 6));
    let names: Vec<&str> = r.headers.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        ["Expires", "Content-Type", "Content-Length", "Last-Modified"]
    );
    assert_eq!(
        header(&r, "Expires"),
        Some(crate::httpdate::format(1_000_060).as_str())
    );
    assert_eq!(
        header(&r, "Last-Modified"),
        Some(crate::httpdate::format(mtime).as_str())
    );

    let lm = crate::httpdate::format(mtime);
    let r = s.respond(
        found(),
        &Ask {
            if_modified_since: Some(lm.as_bytes()),
            ..ask()
        },
    );
    assert_eq!((r.status, r.body.is_none()), (304, true));
    let old = crate::httpdate::format(mtime - 10);
    let r = s.respond(
        found(),
        &Ask {
            if_modified_since: Some(old.as_bytes()),
            ..ask()
        },
    );
    assert_eq!(r.status, 200);

    let r = s.respond(
        found(),
        &Ask {
            range: Some(b"bytes=1-3"),
            ..ask()
        },
    );
    assert_eq!((r.status, r.body_len), (206, 3));
    assert_eq!(header(&r, "Content-Range"), Some("bytes 1-3/6"));
    let r = s.respond(
        found(),
        &Ask {
            range: Some(b"bytes=9-"),
            ..ask()
        },
    );
    assert_eq!(
        (r.status, header(&r, "Content-Range")),
        (416, Some("bytes */6"))
    );
    let r = s.respond(
        found(),
        &Ask {
            range: Some(b"bytes=1-3"),
            if_range: Some(b"\"x\""),
            ..ask()
        },
    );
    assert_eq!(
        r.status, 200,
        "an If-Range that does not hold: the whole file"
    );

    let r = s.respond(
        found(),
        &Ask {
            accept_encoding: Some(b"br;q=0, gzip"),
            ..ask()
        },
    );
    assert_eq!(
        (header(&r, "Content-Encoding"), r.body_len),
        (Some("gzip"), 2)
    );
    assert_eq!(
        header(&r, "Content-Type"),
        Some("text/css"),
        "the type of the original"
    );
    let r = s.respond(
        found(),
        &Ask {
            accept_encoding: Some(b"gzip;q=0"),
            ..ask()
        },
    );
    assert_eq!(header(&r, "Content-Encoding"), None);

    let r = s.respond(
        found(),
        &Ask {
            head_only: true,
            ..ask()
        },
    );
    assert_eq!((r.status, r.body.is_none(), r.body_len), (200, true, 6));
}

#[test]
fn byte_ranges() {
    assert_eq!(byte_range(b"bytes=0-0", 10), Range::Part(0, 0));
    assert_eq!(byte_range(b"bytes=5-", 10), Range::Part(5, 9));
    assert_eq!(byte_range(b"bytes=-3", 10), Range::Part(7, 9));
    assert_eq!(byte_range(b"bytes=-30", 10), Range::Whole);
    assert_eq!(byte_range(b"bytes=0-99", 10), Range::Whole);
    assert_eq!(byte_range(b"bytes=2-4,6-7", 10), Range::Part(2, 4));
    assert_eq!(byte_range(b"bytes=10-", 10), Range::Unsatisfiable);
    assert_eq!(byte_range(b"bytes=-0", 10), Range::Unsatisfiable);
    assert_eq!(byte_range(b"bytes=0-", 0), Range::Unsatisfiable);
    assert_eq!(byte_range(b"items=0-1", 10), Range::Whole);
    assert_eq!(byte_range(b"bytes=4-2", 10), Range::Whole);
    assert_eq!(byte_range(b"bytes=a-b", 10), Range::Whole);
}

#[test]
fn accept_encoding() {
    assert!(accepts(b"gzip, deflate, br", "br"));
    assert!(accepts(b"GZIP;q=0.5", "gzip"));
    assert!(!accepts(b"gzip;q=0", "gzip"));
    assert!(!accepts(b"gzip;q=0.0", "gzip"));
    assert!(!accepts(b"x-gzip", "gzip"));
}
