//! Target `git`: ferry-git's release decoding, the pack decoder that turns
//! a re-coded payload back into a pack, and the smart-HTTP request routing.

use ferry_git::{GitRelease, ServedRoot, packcode};

use crate::input::Input;

/// Most objects the harness lets a pack claim (the decoder bounds its own
/// work by the payload; this keeps a case fast).
const MAX_OBJECTS: u32 = 4096;

pub fn git(data: &[u8]) {
    let mut input = Input::new(data);
    match input.byte() % 3 {
        0 => release(input.rest()),
        1 => {
            let objects = input.u32() % MAX_OBJECTS;
            pack(objects, input.rest());
        }
        _ => {
            let method = ["GET", "POST", "PUT", "get"][usize::from(input.byte() & 3)];
            let path = String::from_utf8_lossy(input.chunk()).into_owned();
            let query = input.chunk();
            let query = (!query.is_empty()).then(|| String::from_utf8_lossy(query).into_owned());
            let protocol = String::from_utf8_lossy(input.rest()).into_owned();
            request(method, &path, query.as_deref(), &protocol);
        }
    }
}

fn release(bytes: &[u8]) {
    let Ok(release) = GitRelease::decode(bytes) else {
        return;
    };
    release.validate().expect("a decoded release is valid");
    let again = GitRelease::decode(&release.encode()).expect("a decoded release re-decodes");
    assert_eq!(again, release);
    if let Some(base) = release.base {
        assert!(base < release.sequence);
    }
    // Its repository is a path under the served root, and its ref names
    // are safe under refs/.
    crate::paths::assert_contained(&release.repository);
    for r in release.refs.iter().map(|r| &r.name).chain(&release.head) {
        assert!(r.starts_with("refs/"));
        crate::paths::assert_contained(r);
    }
}

fn pack(objects: u32, encoded: &[u8]) {
    let mut out = Vec::new();
    if packcode::decode(encoded, objects, &mut out).is_err() {
        return;
    }
    // What decode wrote is an ordinary pack body of `objects` objects: it
    // re-codes, and the re-coding decodes to the same body.
    let recoded = packcode::encode(&out, objects, &[]).expect("a decoded pack body re-codes");
    let mut again = Vec::new();
    packcode::decode(recoded.as_slice(), objects, &mut again).expect("a re-coded pack decodes");
    assert_eq!(again, out);
}

fn request(method: &str, path: &str, query: Option<&str>, protocol: &str) {
    let _ = ferry_git::wants_protocol_v2(Some(protocol));
    if ferry_git::is_safe_protocol(protocol) {
        assert!(
            !protocol
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        );
    }
    let Ok(req) = ferry_git::route_request(method, path, query) else {
        return;
    };
    assert!(method == "GET" || method == "POST");
    assert_eq!(req.advertise, method == "GET");
    // The route leaves the name to the served root, which must refuse
    // anything that leaves it.
    let root = ServedRoot::new("/srv/ferry/git");
    let name = req
        .repository
        .strip_suffix(".git")
        .unwrap_or(&req.repository);
    if let Ok(dir) = root.repo_dir(name) {
        crate::paths::assert_contained(name);
        assert!(crate::paths::normalise(&dir).starts_with(root.path()));
    }
}
