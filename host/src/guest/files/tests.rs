//! The file streams' reads and the splice into a connection's output stream.

use super::*;

/// A new temporary file holding `bytes`, deleted when the returned guard goes.
fn temp_file(bytes: &[u8]) -> TempPath {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("switchboard-files-{}-{n}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    TempPath(path)
}

struct TempPath(std::path::PathBuf);

impl AsRef<std::path::Path> for TempPath {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A stream over a file holding `bytes`.
fn stream_over(bytes: &[u8], offset: u64, nowait: bool) -> FileStream {
    let file = Arc::new(std::fs::File::open(temp_file(bytes)).unwrap());
    let cursor = Cursor { file, position: offset, state: ReadState::Idle, nowait_unsupported: !nowait };
    FileStream(Arc::new(Mutex::new(cursor)))
}

async fn read_all(stream: &mut FileStream, size: usize) -> Vec<u8> {
    let mut got = Vec::new();
    loop {
        stream.ready().await;
        match stream.read(size) {
            Ok(bytes) => got.extend_from_slice(&bytes),
            Err(StreamError::Closed) => return got,
            Err(e) => panic!("read failed: {e:?}"),
        }
    }
}

#[tokio::test]
async fn reads_give_the_file_from_the_offset_in_place_and_from_the_blocking_pool() {
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    for nowait in [true, false] {
        let mut stream = stream_over(&content, 0, nowait);
        assert_eq!(read_all(&mut stream, 7_000).await, content, "nowait {nowait}");
        let mut stream = stream_over(&content, 150_001, nowait);
        assert_eq!(read_all(&mut stream, 1 << 20).await, content[150_001..], "nowait {nowait}");
    }
}

#[tokio::test]
async fn a_read_on_the_blocking_pool_leaves_the_stream_waiting_and_the_position_unmoved() {
    let mut stream = stream_over(b"hello world", 6, false);
    assert!(stream.read(5).unwrap().is_empty(), "nothing until the pool's read is back");
    assert!(matches!(stream.0.lock().state, ReadState::Waiting(_)));
    stream.ready().await;
    assert_eq!(stream.0.lock().position, 6);
    assert_eq!(&stream.read(3).unwrap()[..], b"wor", "a smaller read than the one made");
    assert_eq!(&stream.read(10).unwrap()[..], b"ld");
    assert_eq!(stream.0.lock().position, 11);
    stream.ready().await;
    assert!(stream.read(10).unwrap().is_empty());
    stream.ready().await;
    assert!(matches!(stream.read(10), Err(StreamError::Closed)));
}

#[tokio::test]
async fn splices_move_the_whole_file_into_a_connection_that_reads_slowly() {
    use tokio::io::AsyncReadExt;

    use crate::guest::closer::Closer;
    use crate::guest::stream::WriteStream;
    use crate::guest::traffic::Activity;

    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let file = std::fs::File::open(temp_file(&content)).unwrap();
    let (mut table, mut spliceable) = (ResourceTable::new(), Spliceable::default());
    let file = wasmtime_wasi::filesystem::File::new(file, wasmtime_wasi::FsPerms::ReadOnly, wasmtime_wasi::OpenMode::READ, false);
    let fd = table.push(Descriptor::File(file)).unwrap();
    let src = read_via_stream(FilesView { table: &mut table, spliceable: &mut spliceable }, &fd, 0).unwrap().unwrap();
    // A small socket buffer: the output stream's window fills and splices wait for it.
    let (mut client, server) = tokio::io::duplex(16 * 1024);
    let (output, leftover) = WriteStream::new(server, Closer::new(), Activity::new());
    let dst = table.push(Box::new(output) as DynOutputStream).unwrap();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        got
    });
    let mut sent = 0;
    loop {
        let (d, s) = (Resource::new_borrow(dst.rep()), Resource::new_borrow(src.rep()));
        match blocking_splice(FilesView { table: &mut table, spliceable: &mut spliceable }, d, s, u64::MAX).await.unwrap() {
            Ok(n) => {
                assert!(n > 0 && n as usize <= MAX_SPLICE, "a splice moves something, at most MAX_SPLICE: {n}");
                sent += n as usize;
            }
            Err(wit_streams::StreamError::Closed) => break,
            Err(wit_streams::StreamError::LastOperationFailed(_)) => panic!("splice failed"),
        }
    }
    assert_eq!(sent, content.len());
    drop(table.delete(dst).unwrap());
    let leftover = leftover.lock().take().expect("the stream's leftover");
    leftover.finish().await.unwrap();
    assert!(reader.await.unwrap() == content, "the client got the file, byte for byte");
}

#[tokio::test]
async fn an_empty_file_ends_at_once() {
    for nowait in [true, false] {
        let mut stream = stream_over(b"", 0, nowait);
        assert!(read_all(&mut stream, 100).await.is_empty());
    }
}
