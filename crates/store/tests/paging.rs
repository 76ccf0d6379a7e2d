//! `for_each_page`: every key under a prefix, in order, in bounded pages.

use jdos_store::{for_each_page, MemoryStore, Store, StoreError};

#[tokio::test]
async fn visits_every_key_under_the_prefix_in_pages() {
    let s = MemoryStore::new();
    for i in 0..25 {
        s.put(&format!("/p/{i:02}"), vec![i], None).await.unwrap();
    }
    s.put("/q/outside", vec![0], None).await.unwrap();
    let rev = s.revision().await.unwrap();

    let mut pages = Vec::new();
    let mut keys = Vec::new();
    let read_at = for_each_page(&s, "/p/", 10, |kvs| {
        pages.push(kvs.len());
        keys.extend(kvs.iter().map(|kv| kv.key.clone()));
        Ok::<_, StoreError>(())
    })
    .await
    .unwrap();
    assert_eq!(pages, [10, 10, 5]);
    let want: Vec<String> = (0..25).map(|i| format!("/p/{i:02}")).collect();
    assert_eq!(keys, want);
    assert_eq!(read_at, rev);
}

#[tokio::test]
async fn an_error_from_the_callback_stops_the_walk() {
    let s = MemoryStore::new();
    for i in 0..30 {
        s.put(&format!("/p/{i:02}"), vec![i], None).await.unwrap();
    }
    let mut calls = 0;
    let r = for_each_page(&s, "/p/", 10, |_| {
        calls += 1;
        Err(StoreError::Invalid("stop".into()))
    })
    .await;
    assert!(matches!(r, Err(StoreError::Invalid(_))));
    assert_eq!(calls, 1);
}
