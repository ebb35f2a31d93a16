//! Reading configuration text from outside safely: only a regular file, at
//! most [`MAX_FILE_BYTES`], in UTF-8; and [`check_depth`], which refuses
//! YAML nested deeper than [`MAX_DEPTH`] in one linear pass, before a parser
//! spends seconds (or its stack) on it.

use std::io::Read;
use std::path::Path;

/// Largest configuration, web configuration, peers or scenario file read.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Deepest nesting of YAML collections accepted (real files use under 10).
pub const MAX_DEPTH: usize = 64;

/// Why a file gave no text.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file (a {0}): give the path of a YAML file")]
    NotRegular(&'static str),
    #[error("larger than {MAX_FILE_BYTES} bytes: not a configuration file")]
    TooLarge,
    #[error("not UTF-8 text")]
    NotUtf8,
}

fn kind(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Reads a whole regular file of at most [`MAX_FILE_BYTES`] as text. A FIFO,
/// a device such as `/dev/zero` or a directory is refused before it is
/// opened (opening a FIFO would block), and checked again once open.
pub fn read_text(path: &Path) -> Result<String, ReadError> {
    String::from_utf8(read_bytes(path)?).map_err(|_| ReadError::NotUtf8)
}

/// [`read_text`] without the UTF-8 check (key files).
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, ReadError> {
    let ft = std::fs::metadata(path)?.file_type();
    if !ft.is_file() {
        return Err(ReadError::NotRegular(kind(ft)));
    }
    let f = std::fs::File::open(path)?;
    let ft = f.metadata()?.file_type();
    if !ft.is_file() {
        return Err(ReadError::NotRegular(kind(ft)));
    }
    let mut buf = Vec::new();
    f.take(MAX_FILE_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge);
    }
    Ok(buf)
}

/// YAML nested too deep: where the limit was crossed (1-based line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("nested deeper than {MAX_DEPTH} levels")]
pub struct TooDeep {
    pub line: usize,
}

/// Refuses YAML whose collections nest deeper than [`MAX_DEPTH`], counting
/// flow brackets (`[`, `{`, outside quotes and comments) and block nesting
/// (each deeper indentation, and each `- ` or `? ` that opens a collection on
/// the line). An overestimate at worst for odd block scalars: linear, never
/// slow.
pub fn check_depth(text: &str) -> Result<(), TooDeep> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    for (n, line) in text.lines().enumerate() {
        let too_deep = || TooDeep { line: n + 1 };
        let body = line.trim_start_matches(' ');
        let indent = line.len() - body.len();
        if flow == 0 && !body.is_empty() && !body.starts_with('#') {
            while indents.last().is_some_and(|&i| i > indent) {
                indents.pop();
            }
            if indents.last() != Some(&indent) {
                indents.push(indent);
            }
        }
        let mut dashes = 0;
        let mut rest = body;
        while let Some(r) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("? ")) {
            dashes += 1;
            rest = r.trim_start_matches(' ');
        }
        let (mut quote, mut prev) = (None::<char>, ' ');
        for c in rest.chars() {
            match (quote, c) {
                (None, '#') if prev == ' ' || prev == '\t' => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, '[' | '{') => flow += 1,
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
            if indents.len() + dashes + flow > MAX_DEPTH {
                return Err(too_deep());
            }
            prev = c;
        }
        if indents.len() + dashes + flow > MAX_DEPTH {
            return Err(too_deep());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_and_block_nesting_are_refused_quickly() {
        let t0 = std::time::Instant::now();
        let flow = "a: ".to_string() + &"[".repeat(100_000) + &"]".repeat(100_000);
        assert_eq!(check_depth(&flow), Err(TooDeep { line: 1 }));
        let mut block = String::new();
        for i in 0..30_000 {
            block.push_str(&" ".repeat(i));
            block.push_str("k:\n");
        }
        assert!(check_depth(&block).is_err());
        let dashes = "- ".repeat(1000) + "x\n";
        assert!(check_depth(&dashes).is_err());
        assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn ordinary_files_pass() {
        let ok = "heartbeat:\n  peers:\n    - {name: h2, address: \"10.0.0.2:10026\"}  # [[[\n    - name: \"[[[[\"\n      address: x:1\nprobes: []\n";
        assert_eq!(check_depth(ok), Ok(()));
        let nested = (0..60)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect::<String>();
        assert_eq!(check_depth(&nested), Ok(()));
    }

    #[test]
    fn only_regular_files_of_bounded_size_are_read() {
        let e = read_text(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let dir = std::env::temp_dir().join(format!("xentinel-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = read_text(&dir).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        let fifo = dir.join("fifo");
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(st.success());
        // Would block forever if it were opened.
        let e = read_text(&fifo).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
        let big = dir.join("big.yml");
        std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES as usize + 1]).unwrap();
        assert!(matches!(read_text(&big), Err(ReadError::TooLarge)));
        std::fs::write(&big, b"a: 1\n").unwrap();
        assert_eq!(read_text(&big).unwrap(), "a: 1\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
