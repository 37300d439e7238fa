//! The Lua scripts that make each cluster change atomic in Redis: an event appended to a
//! channel's stream with the next id of the channel, a go-live claimed, a broadcast released,
//! a dead node's broadcast expired. Every script that appends shares [`APPEND`].
//!
//! Event ids: `max(last + 1, Redis TIME in µs)`, kept in `{ch}:seq` and used as the stream id
//! `{id}-1`; unique and ordered per channel across nodes, and growing across restarts (of
//! Redis too) like the single node's ids, which also start from the clock in microseconds.
//! Lua numbers are doubles: exact up to 2^53 µs (the year 2255).

use std::sync::LazyLock;

use redis::Script;

/// `append(stream, seq, maxlen, node, kind, data, meta) -> id`.
const APPEND: &str = r#"
local function append(stream, seq, maxlen, node, kind, data, meta)
  local last = tonumber(redis.call('GET', seq) or '0')
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local id = math.max(last + 1, now)
  local s = string.format('%.0f', id)
  redis.call('SET', seq, s)
  redis.call('XADD', stream, 'MAXLEN', '~', maxlen, s .. '-1',
    'k', kind, 'd', data, 'm', meta, 'n', node)
  return id
end
"#;

fn with_append(body: &str) -> Script {
    Script::new(&format!("{APPEND}\n{body}"))
}

/// KEYS: stream, seq, bans, slow. ARGV: maxlen, node, then (kind, data, meta) triples.
/// Returns the ids. Bans (a set of targets) and slow mode are also kept as state, for a node
/// that joins after their events have left the stream.
pub static APPEND_EVENTS: LazyLock<Script> = LazyLock::new(|| {
    with_append(
        r#"
local ids = {}
for i = 3, #ARGV, 3 do
  local kind = ARGV[i]
  ids[#ids + 1] = append(KEYS[1], KEYS[2], ARGV[1], ARGV[2], kind, ARGV[i + 1], ARGV[i + 2])
  if kind == 'ban' then redis.call('SADD', KEYS[3], ARGV[i + 2])
  elseif kind == 'unban' then redis.call('SREM', KEYS[3], ARGV[i + 2])
  elseif kind == 'slow' then redis.call('SET', KEYS[4], ARGV[i + 1]) end
end
return ids
"#,
    )
});

/// A local go-live. Both events carry the registry entry as their meta. KEYS: origin, state, stream, seq. ARGV: maxlen, node, origin JSON, ttl ms,
/// `live` event data. Returns 1 for a new go-live (the channel was live nowhere), 0 for a
/// takeover from another node (an `origin` event tells that node to stop its publisher; the
/// broadcast keeps its start time).
pub static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    with_append(
        r#"
local prev = redis.call('GET', KEYS[1])
local o = cjson.decode(ARGV[3])
if prev then
  local p = cjson.decode(prev)
  if p.started_at then o.started_at = p.started_at end
end
local v = cjson.encode(o)
redis.call('SET', KEYS[1], v, 'PX', ARGV[4])
if prev and redis.call('GET', KEYS[2]) == 'live' then
  append(KEYS[3], KEYS[4], ARGV[1], ARGV[2], 'origin', '{}', v)
  return 0
end
redis.call('SET', KEYS[2], 'live')
append(KEYS[3], KEYS[4], ARGV[1], ARGV[2], 'live', ARGV[5], v)
return 1
"#,
    )
});

/// A heartbeat for a channel live here. KEYS: origin, state. ARGV: node, origin JSON, ttl ms.
/// Returns 1 if the entry is ours (refreshed, or written again after Redis lost it), 0 if
/// another node has taken the channel over.
pub static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local prev = redis.call('GET', KEYS[1])
if prev then
  if cjson.decode(prev).node ~= ARGV[1] then return 0 end
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  redis.call('SET', KEYS[2], 'live')
end
return 1
"#,
    )
});

/// A local broadcast ended. KEYS: origin, state, stream, seq. ARGV: maxlen, node, `offline`
/// data. Returns 1 if the channel went offline (it was ours), 0 if another node had taken it
/// over or it was already offline.
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    with_append(
        r#"
local prev = redis.call('GET', KEYS[1])
if prev and cjson.decode(prev).node ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) ~= 'live' then return 0 end
redis.call('SET', KEYS[2], 'offline')
append(KEYS[3], KEYS[4], ARGV[1], ARGV[2], 'offline', ARGV[3], '')
return 1
"#,
    )
});

/// The origin's heartbeat stopped (its node died). KEYS and ARGV as [`RELEASE`]; returns 1 on
/// the one node that marks the channel offline.
pub static EXPIRE: LazyLock<Script> = LazyLock::new(|| {
    with_append(
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('GET', KEYS[2]) ~= 'live' then return 0 end
redis.call('SET', KEYS[2], 'offline')
append(KEYS[3], KEYS[4], ARGV[1], ARGV[2], 'offline', ARGV[3], '')
return 1
"#,
    )
});
