//! The hub's rooms, bounds and policy for slow members, without a backplane.

use super::*;

fn hub(queue_messages: usize) -> Hub {
    Hub::new(HubLimits { queue_messages, ..HubLimits::default() })
}

/// Joins as its own instance.
fn join(hub: &Hub, room: &str, name: &str, closer: Closer) -> Member {
    hub.join(room, name.into(), closer, &Arc::default()).unwrap()
}

#[test]
fn publish_reaches_every_other_member_once() {
    let hub = hub(16);
    let mut a = join(&hub, "r", "a", Closer::new());
    let b = join(&hub, "r", "b", Closer::new());
    let c = join(&hub, "r", "c", Closer::new());
    a.try_publish(&b"hi"[..]).unwrap();
    assert_eq!(a.try_recv(), None);
    assert_eq!(b.try_recv().as_deref(), Some(&b"hi"[..]));
    assert_eq!(c.try_recv().as_deref(), Some(&b"hi"[..]));
    assert_eq!(b.try_recv(), None);
    assert_eq!(a.names(), ["a", "b", "c"]);
}

#[test]
fn rooms_are_separate_and_freed_with_their_last_member() {
    let hub = hub(16);
    let mut a = join(&hub, "one", "a", Closer::new());
    let b = join(&hub, "two", "b", Closer::new());
    a.try_publish(&b"x"[..]).unwrap();
    assert_eq!(b.try_recv(), None);
    assert_eq!(hub.room_count(), 2);
    drop(a);
    assert_eq!(hub.room_count(), 1);
    assert_eq!(b.count(), 1);
    drop(b);
    assert_eq!(hub.room_count(), 0);
    assert!(hub.rooms.lock().is_empty());
}

#[test]
fn a_member_that_falls_behind_is_disconnected_not_the_others() {
    let hub = hub(3);
    let mut talker = join(&hub, "r", "talker", Closer::new());
    let slow_closer = Closer::new();
    let slow = join(&hub, "r", "slow", slow_closer.clone());
    let fast = join(&hub, "r", "fast", Closer::new());
    for i in 0..10u8 {
        talker.try_publish(vec![i]).unwrap();
        assert_eq!(fast.try_recv().as_deref(), Some(&[i][..]));
    }
    assert!(slow_closer.is_closed());
    assert_eq!(slow.try_recv(), None, "an evicted member's queue is freed");
    assert_eq!(talker.names(), ["talker", "fast"]);
    let counts = hub.counts();
    assert_eq!((counts.rooms, counts.members, counts.messages, counts.dropped_members), (1, 3, 10, 1));
    drop((talker, slow, fast));
    assert_eq!((hub.counts().rooms, hub.counts().members), (0, 0), "members are counted until their resource goes");
}

#[test]
fn names_memberships_and_messages_are_bounded() {
    let hub = hub(16);
    let held = Arc::default();
    assert_eq!(hub.join(&"r".repeat(257), "a".into(), Closer::new(), &held).err(), Some(Refused::NameTooLong));
    let members: Vec<_> = (0..16).map(|i| hub.join(&format!("room{i}"), "a".into(), Closer::new(), &held).unwrap()).collect();
    assert_eq!(hub.join("one more", "a".into(), Closer::new(), &held).err(), Some(Refused::TooManyMembers));
    drop(members);
    let mut m = hub.join("r", "a".into(), Closer::new(), &held).expect("dropped memberships are given back");
    assert_eq!(m.set_name("n".repeat(257)), Err(Refused::NameTooLong));
    assert_eq!(m.set_name("n".repeat(256)), Ok(()));
    assert_eq!(m.try_publish(vec![0; 64 * 1024 + 1]), Err(Refused::MessageTooLarge));
    assert_eq!(m.try_publish(vec![0; 64 * 1024]), Ok(()));
}

#[test]
fn a_member_that_publishes_flat_out_runs_out_of_budget() {
    let hub = hub(16);
    let mut m = join(&hub, "r", "a", Closer::new());
    let sent = (0..5000).take_while(|_| m.try_publish(&b"x"[..]).is_ok()).count();
    // 1,000 messages per second, bursts of 2 s: about 2,000 before the budget runs out.
    assert!((2000..2100).contains(&sent), "{sent}");
    assert_eq!(m.try_publish(&b"x"[..]), Err(Refused::OverBudget));
}

#[test]
fn names_lists_the_oldest_members_only() {
    let hub = Hub::new(HubLimits { max_names: 3, ..HubLimits::default() });
    let members: Vec<_> = ["a", "b", "c", "d"].iter().map(|n| join(&hub, "r", n, Closer::new())).collect();
    assert_eq!(members[3].names(), ["a", "b", "c"]);
    assert_eq!(members[0].count(), 4);
}

#[test]
fn count_and_names_add_the_other_hosts_members_in_join_order() {
    let hub = hub(16);
    let a = join(&hub, "r", "a", Closer::new());
    let joined = a.room.local_presence().1[0].0;
    a.room.set_remote(room::Remote {
        count: 3,
        names: vec![(joined - 1, "before".into()), (joined, "b-same".into()), (joined + 1, "after".into())],
    });
    assert_eq!(a.count(), 4);
    assert_eq!(a.names(), ["before", "a", "b-same", "after"], "by join time, then name (the same on every host)");
    a.room.set_remote(room::Remote::default());
    assert_eq!(a.names(), ["a"]);
}

#[test]
fn a_message_from_another_host_skips_members_who_joined_after_it_was_sent() {
    let hub = hub(16);
    let early = join(&hub, "r", "early", Closer::new());
    let joined = early.room.local_presence().1[0].0;
    std::thread::sleep(std::time::Duration::from_millis(2));
    let late = join(&hub, "r", "late", Closer::new());
    early.room.deliver(&Bytes::from_static(b"old"), None, Some(joined));
    assert_eq!(early.try_recv().as_deref(), Some(&b"old"[..]));
    assert_eq!(late.try_recv(), None, "published before it joined");
    early.room.deliver(&Bytes::from_static(b"new"), None, Some(room::unix_micros()));
    assert_eq!(late.try_recv().as_deref(), Some(&b"new"[..]));
}
