//! Topics at scale (`overlay-sim scale --scenario random --topics T --members P`): each node
//! joins each of `T` topics with probability `P` % (drawn by the seed), then every broadcast
//! goes to one topic (round robin), from a random member of it, and is measured over that
//! topic's members. What nodes outside a topic receive of it is counted: topic payloads and
//! announcements are only sent on links between members, so it should be nothing.
//!
//! Members reach each other only over sessions between members (topics share the node's
//! sessions; there is no per-topic membership), so a topic with few members can be split
//! while the overlay is connected. The report says, per topic, how many members the sender of
//! each broadcast could reach over member–member sessions at all (`reachable`), next to how
//! many it did reach.

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use bytes::Bytes;
use serde::Serialize;

use overlay_proto::mesh::{node_peer_id, Mesh};
use overlay_proto::wire::Kind;
use overlay_proto::{Input, PeerId, SessionState, TopicId};

use super::run::SplitMix64;
use super::scenario::Scenario;
use crate::SimError;

/// One topic's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicRow {
    /// The topic's name in the run (`topic-<k>`).
    pub name: String,
    /// Nodes in the topic.
    pub members: usize,
    /// Broadcasts made to the topic.
    pub broadcasts: usize,
    /// Mean over the broadcasts of (members reached / other members).
    pub reliability_mean: f64,
    /// Smallest reliability of one broadcast.
    pub reliability_min: f64,
    /// Mean over the broadcasts of (members reachable over member–member sessions / other
    /// members): the most any dissemination restricted to members could reach.
    pub reachable_mean: f64,
    /// Mean over the broadcasts of (members reached / members reachable).
    pub reliability_of_reachable: f64,
    /// Largest hop count of a delivery.
    pub ldh: u8,
    /// Latest delivery after the send, ms.
    pub last_delivery_ms: f64,
}

/// What a topics run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopicsReport {
    /// What ran.
    pub scenario: Scenario,
    /// Per topic.
    pub rows: Vec<TopicRow>,
    /// Nodes in no topic at all.
    pub outsiders: usize,
    /// TOPIC_GOSSIP frames received by nodes in no topic (should be 0).
    pub outsider_payload_frames: u64,
    /// TOPIC_IHAVE / TOPIC_GRAFT / TOPIC_PRUNE frames received by nodes in no topic (should be
    /// 0).
    pub outsider_control_frames: u64,
    /// TOPICS frames received by nodes in no topic (the announcements they must hear).
    pub outsider_topics_frames: u64,
    /// Topic messages that reached a node outside their topic, over all nodes
    /// (`rejected_total{reason="not_member"}`; 0 without joins and leaves racing).
    pub not_member: u64,
    /// Deliveries of a topic's message at a node outside the topic (must be 0).
    pub delivered_outside: u64,
    /// TOPIC_GOSSIP frames received per member of at least one topic, mean.
    pub member_payload_frames_mean: f64,
    /// Broken invariants (empty when the run passed).
    pub violations: Vec<String>,
    /// `Mesh::digest()` of the run, hex.
    pub digest: String,
}

impl TopicsReport {
    /// True when every invariant held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

/// The members `from` reaches over running sessions between members of `members`.
fn reachable(mesh: &Mesh, index: &BTreeMap<PeerId, usize>, members: &[bool], from: usize) -> usize {
    let mut seen = BTreeSet::from([from]);
    let mut todo = vec![from];
    while let Some(i) = todo.pop() {
        let Some(node) = mesh.node(i) else { continue };
        for s in node.sessions() {
            let Some(&j) = index.get(&s.peer) else {
                continue;
            };
            if s.state == SessionState::Running
                && members.get(j).copied().unwrap_or(false)
                && seen.insert(j)
            {
                todo.push(j);
            }
        }
    }
    seen.len() - 1
}

/// Runs a topics scenario (see the module docs).
pub fn run_topics(scenario: &Scenario) -> Result<TopicsReport, SimError> {
    scenario.validate()?;
    let mut mesh = Mesh::new(scenario.mesh_config())?;
    let n = mesh.len();
    let index: BTreeMap<PeerId, usize> = (0..n)
        .map(|i| (node_peer_id(scenario.seed, i), i))
        .collect();
    mesh.run_for(Duration::from_millis(scenario.warmup_ms));
    // Memberships from a generator of their own (the senders' choices stay put).
    let mut pick = SplitMix64::new(scenario.seed ^ 0x746f_7069_6373);
    let topics: Vec<(String, TopicId)> = (0..scenario.topics)
        .map(|k| {
            let name = format!("topic-{k}");
            let id = TopicId::from_name(&name);
            (name, id)
        })
        .collect();
    let mut member: Vec<Vec<bool>> = vec![vec![false; n]; topics.len()];
    for i in 0..n {
        for (t, (_, id)) in topics.iter().enumerate() {
            if pick.below(100) < scenario.members_percent as usize {
                if let Some(m) = member.get_mut(t).and_then(|m| m.get_mut(i)) {
                    *m = true;
                }
                mesh.input(i, Input::Join(*id));
            }
        }
    }
    // Announcements travel and the topics' trees form.
    mesh.run_for(Duration::from_millis(scenario.interval_ms.max(2_000)));
    let mut rng = SplitMix64::new(scenario.seed);
    let interval = Duration::from_millis(scenario.interval_ms);
    let mut violations = Vec::new();
    let mut per_topic: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); topics.len()];
    let mut ldh = vec![0u8; topics.len()];
    let mut last = vec![0f64; topics.len()];
    let mut delivered_outside = 0u64;
    for k in 0..scenario.messages {
        let t = k % topics.len().max(1);
        let (Some((_, id)), Some(members)) = (topics.get(t), member.get(t)) else {
            continue;
        };
        let list: Vec<usize> = (0..n).filter(|i| members[*i]).collect();
        if list.len() < 2 {
            continue;
        }
        let origin = list[rng.below(list.len())];
        let could = reachable(&mesh, &index, members, origin);
        let mut payload = vec![0u8; scenario.payload_bytes];
        for (j, b) in payload.iter_mut().enumerate() {
            *b = k.wrapping_add(j) as u8;
        }
        let mid = match mesh.publish(origin, *id, Bytes::from(payload)) {
            Ok(mid) => mid,
            Err(e) => {
                violations.push(format!("publish #{k} from node {origin} refused: {e}"));
                continue;
            }
        };
        mesh.run_for(interval);
        let Some(track) = mesh.track(&mid) else {
            violations.push(format!("no delivery record for publish #{k}"));
            continue;
        };
        let sent = track.sent_at;
        let mut reached = 0usize;
        for &(node, at, hops) in &track.delivered {
            if !members.get(node).copied().unwrap_or(false) {
                delivered_outside += 1;
                continue;
            }
            if at > sent + interval {
                continue;
            }
            reached += 1;
            if let Some(l) = ldh.get_mut(t) {
                *l = (*l).max(hops);
            }
            if let Some(l) = last.get_mut(t) {
                *l = l.max((at - sent).as_secs_f64() * 1000.0);
            }
        }
        let others = (list.len() - 1) as f64;
        let reliability = reached as f64 / others;
        let reachable_share = could as f64 / others;
        let of_reachable = if could == 0 {
            1.0
        } else {
            reached as f64 / could as f64
        };
        if reliability < scenario.min_reliability {
            violations.push(format!(
                "publish #{k} to {} from node {origin} reached {reached}/{} members \
                 ({could} reachable)",
                topics[t].0,
                list.len() - 1
            ));
        }
        if let Some(v) = per_topic.get_mut(t) {
            v.push((reliability, reachable_share, of_reachable));
        }
    }
    if delivered_outside > 0 {
        violations.push(format!(
            "{delivered_outside} deliveries at nodes outside the message's topic"
        ));
    }
    let rows: Vec<TopicRow> = topics
        .iter()
        .enumerate()
        .map(|(t, (name, _))| {
            let v = per_topic.get(t).cloned().unwrap_or_default();
            let mean = |f: fn(&(f64, f64, f64)) -> f64| {
                if v.is_empty() {
                    0.0
                } else {
                    v.iter().map(f).sum::<f64>() / v.len() as f64
                }
            };
            TopicRow {
                name: name.clone(),
                members: member
                    .get(t)
                    .map_or(0, |m| m.iter().filter(|b| **b).count()),
                broadcasts: v.len(),
                reliability_mean: mean(|x| x.0),
                reliability_min: v.iter().map(|x| x.0).fold(1.0, f64::min),
                reachable_mean: mean(|x| x.1),
                reliability_of_reachable: mean(|x| x.2),
                ldh: ldh.get(t).copied().unwrap_or(0),
                last_delivery_ms: last.get(t).copied().unwrap_or(0.0),
            }
        })
        .collect();
    let in_any = |i: usize| member.iter().any(|m| m.get(i).copied().unwrap_or(false));
    let mut outsiders = 0;
    let (mut payload, mut control, mut announcements) = (0u64, 0u64, 0u64);
    let (mut member_payload, mut members_any) = (0u64, 0usize);
    let mut not_member = 0u64;
    for i in 0..n {
        let Some(s) = mesh.stats(i) else { continue };
        let by = |k: Kind| s.frames_in_by_kind.get(k.index()).copied().unwrap_or(0);
        not_member += s.rejected.get(overlay_proto::RejectReason::NotMember);
        if in_any(i) {
            members_any += 1;
            member_payload += by(Kind::TopicGossip);
            continue;
        }
        outsiders += 1;
        payload += by(Kind::TopicGossip);
        control += by(Kind::TopicIHave)
            + by(Kind::TopicGraft)
            + by(Kind::TopicPrune)
            + by(Kind::TopicGraftMiss);
        announcements += by(Kind::Topics);
    }
    if payload > 0 || control > 0 {
        violations.push(format!(
            "nodes in no topic received {payload} topic payloads and {control} topic control \
             frames"
        ));
    }
    Ok(TopicsReport {
        scenario: scenario.clone(),
        rows,
        outsiders,
        outsider_payload_frames: payload,
        outsider_control_frames: control,
        outsider_topics_frames: announcements,
        not_member,
        delivered_outside,
        member_payload_frames_mean: if members_any == 0 {
            0.0
        } else {
            member_payload as f64 / members_any as f64
        },
        violations,
        digest: hex::encode(mesh.digest()),
    })
}

/// Writes the report as a table.
pub fn write_report(out: &mut dyn Write, r: &TopicsReport) -> Result<(), SimError> {
    let s = &r.scenario;
    writeln!(
        out,
        "{}: {} nodes, {} topics, each node in each with {} %, {} publishes (round robin), \
         seed {}",
        s.name, s.nodes, s.topics, s.members_percent, s.messages, s.seed
    )?;
    writeln!(out, "command: {}", s.command_line())?;
    writeln!(
        out,
        "| topic | members | publishes | reliability mean | min | reachable share | reached of reachable | LDH | last delivery ms |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|")?;
    for row in &r.rows {
        writeln!(
            out,
            "| {} | {} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {} | {:.0} |",
            row.name,
            row.members,
            row.broadcasts,
            row.reliability_mean,
            row.reliability_min,
            row.reachable_mean,
            row.reliability_of_reachable,
            row.ldh,
            row.last_delivery_ms
        )?;
    }
    writeln!(
        out,
        "nodes in no topic: {}; topic payloads they received: {}; topic control frames: {}; \
         TOPICS announcements: {}",
        r.outsiders, r.outsider_payload_frames, r.outsider_control_frames, r.outsider_topics_frames
    )?;
    writeln!(
        out,
        "topic messages at nodes outside the topic (not_member): {}; deliveries outside: {}; \
         topic payload frames per member node: {:.1}",
        r.not_member, r.delivered_outside, r.member_payload_frames_mean
    )?;
    if r.passed() {
        writeln!(out, "passed")?;
    } else {
        for v in &r.violations {
            writeln!(out, "VIOLATION: {v}")?;
        }
    }
    Ok(())
}
