//! Reading the config file and secret files: regular files of bounded size only, so that a
//! path to `/dev/zero` or a FIFO is one clear error instead of a hang or a memory blow-up.

use std::io::Read;
use std::path::Path;

/// The largest config file read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// The largest secret file read (a key or a password).
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Reads a regular file of at most `max` bytes. The type is checked before the file is
/// opened: opening a FIFO for reading would wait for a writer.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > max {
        return Err(format!("larger than {} KiB", max / 1024));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("larger than {} KiB", max / 1024));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_directories_and_large_files_are_refused() {
        assert_eq!(
            read_bounded(Path::new("/dev/zero"), 10).unwrap_err(),
            "not a regular file"
        );
        assert_eq!(
            read_bounded(Path::new("/"), 10).unwrap_err(),
            "not a regular file"
        );
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'x'; 2048]).unwrap();
        assert!(
            read_bounded(&big, 1024)
                .unwrap_err()
                .contains("larger than 1 KiB")
        );
        assert_eq!(read_bounded(&big, 4096).unwrap().len(), 2048);
    }
}
