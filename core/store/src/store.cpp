// The event store (docs/store.md).
//
// Threads and locks:
//   - m_qmu guards the append queue, the per-job queue shares and drop
//     counters and the stats.
//     It is held only for O(1) work (or for moving one batch out of the queue),
//     so append() never waits for SQLite.
//   - m_wmu guards the single writer connection. The writer thread holds it for
//     one batch transaction; create_job / put_policy / ... hold it for their own
//     statement(s). Lock order: m_wmu before m_qmu. The writer thread
//     releases m_qmu before taking m_wmu; inside a batch transaction it takes
//     m_qmu briefly to pull more queued events (group commit). No thread holds
//     m_qmu while it waits for m_wmu.
//   - Reads borrow a connection from a small pool (m_rmu); in WAL mode a reader
//     sees the last committed snapshot and never waits for a write batch.
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "event_codec.h"
#include "moat/common/fd.h"
#include "moat/common/timeutil.h"
#include "moat/store/store.h"
#include "moat/store/backup.h"
#include "schema.h"
#include "sqlite.h"
#include "test_access.h"

namespace moat::store {
namespace {

using nlohmann::json;

constexpr size_t kMaxBatch = 4096;          // rows per write transaction
constexpr uint64_t kMaxBatchBytes = 8 << 20;  // and their approximate size (memory held outside the queue)
constexpr int kMaxQueryLimit = 10000;
constexpr int kMaxJobListLimit = 10000;
constexpr int kBusyTimeoutMs = 5000;        // another process holding the lock (sqlite3 CLI, backup)
constexpr size_t kMaxReaders = 4;
constexpr auto kRetryDelay = std::chrono::milliseconds(500);  // after a failed batch

// Never throws: invalid UTF-8 (a path decoded from a hostile process's memory)
// is replaced rather than failing the whole batch.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Result<json> parse_column(const std::string& text, const char* what, int64_t row) {
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded())
        return fail(std::string(what) + " of row " + std::to_string(row) + ": invalid JSON");
    return j;
}

Result<std::vector<std::string>> string_array(const std::string& text, const char* what, int64_t row) {
    auto j = parse_column(text, what, row);
    if (!j) return std::unexpected(j.error());
    if (!j->is_array()) return fail(std::string(what) + " of row " + std::to_string(row) + ": not a JSON array");
    std::vector<std::string> out;
    out.reserve(j->size());
    for (const auto& e : *j) {
        if (!e.is_string()) return fail(std::string(what) + " of row " + std::to_string(row) + ": non-string element");
        out.push_back(e.get<std::string>());
    }
    return out;
}

// Creates the database file with mode 0600 before SQLite sees it (SQLite would
// create it 0644 & ~umask). SQLite gives the -wal and -shm files the same mode
// as the database. An existing file is left as it is. O_NOFOLLOW: the state
// dir is the daemon's own; a symlink planted there is not followed.
Result<void> create_db_file(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return fail_sys("open(\"" + path + "\", O_RDWR|O_CREAT|O_NOFOLLOW, 0600)", errno);
    return {};
}

Result<void> configure_writer(sql::Db& db) {
    sqlite3_busy_timeout(db.get(), kBusyTimeoutMs);
    auto mode = db.scalar_text("PRAGMA journal_mode=WAL", "PRAGMA journal_mode=WAL");
    if (!mode) return std::unexpected(mode.error());
    if (*mode != "wal") return fail("PRAGMA journal_mode=WAL: database stays in journal mode '" + *mode + "'");
    // NORMAL in WAL mode: a commit is durable after the next checkpoint or a
    // power-safe WAL sync; an OS crash can lose the last transactions but never
    // corrupts the database.
    if (auto r = db.exec("PRAGMA synchronous=NORMAL", "PRAGMA synchronous=NORMAL"); !r) return r;
    if (auto r = db.exec("PRAGMA foreign_keys=ON", "PRAGMA foreign_keys=ON"); !r) return r;
    return {};
}

// Per-job count of events that never reached the database.
struct DropCount {
    uint64_t events = 0;
    uint64_t denials = 0;   // sum of the dropped denial rows' counts
    int64_t first_ns = INT64_MAX;
    int64_t last_ns = INT64_MIN;

    void add(const Event& ev) {
        ++events;
        if (ev.kind == EventKind::Denial) denials += ev.count;
        first_ns = std::min(first_ns, ev.time_ns);
        last_ns = std::max(last_ns, ev.time_ns);
    }
    void merge(const DropCount& o) {
        events += o.events;
        denials += o.denials;
        first_ns = std::min(first_ns, o.first_ns);
        last_ns = std::max(last_ns, o.last_ns);
    }
};

struct JobDrops {
    DropCount overflow;      // queue full
    DropCount write_failed;  // the batch holding them was rolled back
    std::string error;       // why, for write_failed

    void merge(const JobDrops& o) {
        overflow.merge(o.overflow);
        write_failed.merge(o.write_failed);
        if (!o.error.empty()) error = o.error;
    }
};

Event make_limit_event(int64_t job, const DropCount& d, const char* reason, const std::string* error) {
    Event ev;
    ev.job = job;
    ev.kind = EventKind::Limit;
    ev.time_ns = d.last_ns;
    ev.count = 1;
    ev.fields = {{"reason", reason},
                 {"dropped", d.events},
                 {"dropped_denials", d.denials},
                 {"first_time", rfc3339_utc(d.first_ns)},
                 {"last_time", rfc3339_utc(d.last_ns)}};
    if (error) ev.fields["error"] = *error;
    return ev;
}

// The `data` column: the event's fields minus the envelope keys and, for a
// denial, minus a string `syscall` (which has its own indexed column). The
// bytes are exactly dump() of that object (compact, UTF-8 kept, invalid UTF-8
// replaced): nlohmann's own serializer writes the members of the event's
// object in its order into one reused buffer, so the writer neither erases
// keys from the event's tree nor allocates a fresh string per row.
// A key or string value is written by hand only when dump() would copy it
// byte for byte (printable ASCII without '"' or '\\'); anything else goes
// through the serializer. One per writer connection (used under wmu).
// A typed denial (Event::denial) is written member by member from the
// struct, with no tree: the same bytes as dump() of DenialFields::to_json()
// minus "syscall" (its keys in the tree's sorted order, numbers as its
// serializer writes them; a unit test pins both forms to dump()).
class DataEncoder {
public:
    DataEncoder()
        : m_ser(nlohmann::detail::output_adapter<char, std::string>(m_buf), ' ', json::error_handler_t::replace) {}
    DataEncoder(const DataEncoder&) = delete;
    DataEncoder& operator=(const DataEncoder&) = delete;

    // The data text, valid until the next encode(). *syscall: a denial's
    // syscall name (a view into ev.fields), nullopt when absent or not a string.
    std::string_view encode(const Event& ev, std::optional<std::string_view>* syscall) {
        m_buf.clear();
        if (ev.denial && ev.kind == EventKind::Denial) {
            *syscall = ev.denial->syscall;
            return encode(*ev.denial);
        }
        *syscall = std::nullopt;
        const json& f = ev.fields;
        if (!f.is_object()) {
            if (f.is_null()) {
                m_buf = "{}";
            } else {
                json wrapped{{"fields", f}};
                m_ser.dump(wrapped, false, false, 0);
            }
            return m_buf;
        }
        m_buf += '{';
        bool first = true;
        for (auto it = f.begin(); it != f.end(); ++it) {
            const std::string& key = it.key();
            if (is_envelope_key(key)) continue;
            if (ev.kind == EventKind::Denial && key == "syscall" && it->is_string()) {
                *syscall = it->get_ref<const std::string&>();
                continue;
            }
            if (!first) m_buf += ',';
            first = false;
            if (verbatim(key)) {
                m_buf += '"';
                m_buf += key;
                m_buf += '"';
            } else {
                m_ser.dump(json(key), false, false, 0);
            }
            m_buf += ':';
            if (it->is_string() && verbatim(it->get_ref<const std::string&>())) {
                m_buf += '"';
                m_buf += it->get_ref<const std::string&>();
                m_buf += '"';
            } else {
                m_ser.dump(*it, false, false, 0);
            }
        }
        m_buf += '}';
        return m_buf;
    }

private:
    // A denial whose strings all need no escaping (nearly every one): its
    // text written straight into the buffer, sized once, with no capacity
    // check per piece. The same bytes as the general path below (a unit test
    // compares both with dump() of the JSON tree).
    bool encode_plain(const DenialFields& d) {
        auto plain = [](const std::optional<std::string>& s) { return !s || verbatim(*s); };
        if (!(verbatim(d.action) && verbatim(d.arch) && verbatim(d.rule) && plain(d.decoded) && plain(d.module) &&
              plain(d.module_note) && plain(d.reason)))
            return false;
        auto len = [](const std::optional<std::string>& s) { return s ? s->size() : size_t(0); };
        // Fixed text ~150 bytes, 8 numbers of at most 20 digits: 512 covers them.
        const size_t cap = 512 + d.action.size() + d.arch.size() + d.rule.size() + len(d.decoded) + len(d.module) +
                           len(d.module_note) + len(d.reason);
        m_buf.resize_and_overwrite(cap, [&](char* buf, size_t) {
            char* p = buf;
            auto lit = [&](std::string_view v) {
                memcpy(p, v.data(), v.size());
                p += v.size();
            };
            auto str = [&](const std::string& v) {
                *p++ = '"';
                lit(v);
                *p++ = '"';
            };
            auto opt = [&](const std::optional<std::string>& v) {
                if (v) str(*v);
                else lit("null");
            };
            auto num = [&](auto v, int base) { p = std::to_chars(p, buf + cap, v, base).ptr; };
            lit("{\"action\":");
            str(d.action);
            lit(",\"arch\":");
            str(d.arch);
            lit(",\"args\":[");
            for (int i = 0; i < 6; ++i) {
                if (i) *p++ = ',';
                num(d.args[i], 10);
            }
            lit("],\"decoded\":");
            opt(d.decoded);
            if (d.enforced) lit(*d.enforced ? ",\"enforced\":true" : ",\"enforced\":false");
            lit(",\"ip\":\"0x");
            num(d.ip, 16);
            lit("\",\"module\":");
            opt(d.module);
            if (d.module_note) {
                lit(",\"module_note\":");
                str(*d.module_note);
            }
            lit(",\"nr\":");
            num(d.nr, 10);
            lit(",\"pid\":");
            num(d.pid, 10);
            if (d.reason) {
                lit(",\"reason\":");
                str(*d.reason);
            }
            lit(",\"rule\":");
            str(d.rule);
            *p++ = '}';
            return size_t(p - buf);
        });
        return true;
    }

    std::string_view encode(const DenialFields& d) {
        if (encode_plain(d)) return m_buf;
        m_buf += "{\"action\":";
        string(d.action);
        m_buf += ",\"arch\":";
        string(d.arch);
        m_buf += ",\"args\":[";
        for (int i = 0; i < 6; ++i) {
            if (i) m_buf += ',';
            number(d.args[i]);
        }
        m_buf += "],\"decoded\":";
        optional_string(d.decoded);
        if (d.enforced) {
            m_buf += ",\"enforced\":";
            m_buf += *d.enforced ? "true" : "false";
        }
        m_buf += ",\"ip\":\"0x";
        number(d.ip, 16);
        m_buf += "\",\"module\":";
        optional_string(d.module);
        if (d.module_note) {
            m_buf += ",\"module_note\":";
            string(*d.module_note);
        }
        m_buf += ",\"nr\":";
        number(d.nr);
        m_buf += ",\"pid\":";
        number(d.pid);
        if (d.reason) {
            m_buf += ",\"reason\":";
            string(*d.reason);
        }
        m_buf += ",\"rule\":";
        string(d.rule);
        m_buf += '}';
        return m_buf;
    }

    template <typename T>
    void number(T v, int base = 10) {
        char b[24];
        auto r = std::to_chars(b, b + sizeof b, v, base);
        m_buf.append(b, r.ptr);
    }
    void string(const std::string& s) {
        if (verbatim(s)) {
            m_buf += '"';
            m_buf += s;
            m_buf += '"';
        } else {
            m_ser.dump(json(s), false, false, 0);
        }
    }
    void optional_string(const std::optional<std::string>& s) {
        if (s) string(*s);
        else m_buf += "null";
    }

    // dump() copies these bytes unescaped (ensure_ascii off): printable
    // ASCII other than '"' and '\\'. Eight bytes at a time (a row's strings
    // are nearly always plain; this was most of the encoder's time): a word
    // is plain when none of its bytes is below 0x20, has the top bit, is
    // 0x7f, '"' or '\\'. Each test is exact for "any byte" (the classic
    // zero-byte trick: a false bit can only follow a true one).
    static bool verbatim(std::string_view s) {
        constexpr uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
        auto zero_byte = [](uint64_t v) { return (v - ones) & ~v & highs; };
        const char* p = s.data();
        size_t n = s.size();
        uint64_t bad = 0;
        for (; n >= 8; p += 8, n -= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            bad |= ((w - ones * 0x20) & ~w & highs)  // a byte below 0x20
                   | (w & highs)                      // a byte at or above 0x80
                   | zero_byte(w ^ (ones * 0x7f)) | zero_byte(w ^ (ones * '"')) | zero_byte(w ^ (ones * '\\'));
        }
        bool plain = bad == 0;
        for (; n; ++p, --n) {
            const unsigned char c = static_cast<unsigned char>(*p);
            plain &= (unsigned(c) - 0x20u < 0x5fu) & (c != '"') & (c != '\\');
        }
        return plain;
    }

public:
    // A buffer grown past kKeepBytes by one big row is given back (called
    // after each batch): 17 encoders must not each keep the largest row's size.
    void trim() {
        constexpr size_t kKeepBytes = 64 * 1024;
        if (m_buf.capacity() > kKeepBytes) {
            m_buf.clear();
            m_buf.shrink_to_fit();
        }
    }

private:
    std::string m_buf;  // before m_ser, which writes into it
    nlohmann::detail::serializer<json> m_ser;
};

const std::string kInsertEvent =
    "INSERT INTO events(job_id, time_ns, kind, count, syscall, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

// Rows inserted by one execution of the writer's grouped INSERT. Each
// execution of an INSERT pays a fixed cost (opening and closing its cursors,
// and the table the CHECK on `kind` builds for its IN list): about a fifth of
// SQLite's time per row with one row per execution (perf of store_bench,
// issue 15 row 4a). Sixteen rows share it.
constexpr size_t kRowsPerInsert = 16;

std::string make_insert_events_sql(size_t rows) {
    std::string sql = "INSERT INTO events(job_id, time_ns, kind, count, syscall, data) VALUES ";
    for (size_t i = 0; i < rows; ++i) {
        const size_t b = i * 6;
        sql += (i ? ",(" : "(");
        for (size_t k = 1; k <= 6; ++k) {
            sql += '?';
            sql += std::to_string(b + k);
            sql += k < 6 ? ',' : ')';
        }
    }
    return sql;
}
const std::string kInsertEvents = make_insert_events_sql(kRowsPerInsert);

constexpr const char* kEventColumns = "SELECT id, job_id, time_ns, kind, count, syscall, data FROM events";

Result<Event> read_event(const sql::Query& q) {
    Event ev;
    ev.id = q.i64(0);
    ev.job = q.i64(1);
    ev.time_ns = q.i64(2);
    auto kind = kind_from_name(q.text(3));
    if (!kind) return fail("events row " + std::to_string(ev.id) + ": unknown kind '" + q.text(3) + "'");
    ev.kind = *kind;
    ev.count = uint64_t(std::max<int64_t>(0, q.i64(4)));
    auto data = parse_column(q.text(6), "events.data", ev.id);
    if (!data) return std::unexpected(data.error());
    if (!data->is_object()) return fail("events.data of row " + std::to_string(ev.id) + ": not a JSON object");
    if (auto s = q.opt_text(5)) (*data)["syscall"] = *s;
    ev.fields = std::move(*data);
    return ev;
}

constexpr const char* kJobSelect =
    "SELECT j.id, j.policy_id, j.tier, j.argv, j.env, j.cwd, j.started_ns, j.ended_ns, j.state, j.exit_code,"
    " j.signal, j.cause, j.detail, j.cpu_time_ns, j.peak_memory_bytes, j.peak_pids, j.denial_count, j.uid, j.pid,"
    " j.cgroup, j.accelerator, j.info, p.name, p.version, p.sha256, j.replay_of, j.learn, j.recording"
    " FROM jobs j LEFT JOIN policies p ON p.id = j.policy_id";

Result<JobRecord> read_job(const sql::Query& q) {
    JobRecord j;
    j.id = q.i64(0);
    j.policy_id = q.opt_i64(1).value_or(0);
    j.tier = q.text(2);
    auto argv = string_array(q.text(3), "jobs.argv", j.id);
    if (!argv) return std::unexpected(argv.error());
    j.argv = std::move(*argv);
    auto env = string_array(q.text(4), "jobs.env", j.id);
    if (!env) return std::unexpected(env.error());
    j.env = std::move(*env);
    j.cwd = q.text(5);
    j.started_ns = q.i64(6);
    j.ended_ns = q.opt_i64(7);
    j.state = q.text(8);
    if (auto v = q.opt_i64(9)) j.exit_code = int(*v);
    if (auto v = q.opt_i64(10)) j.signal = int(*v);
    j.cause = q.text(11);
    j.detail = q.text(12);
    j.resources.cpu_time_ns = uint64_t(q.i64(13));
    j.resources.peak_memory_bytes = uint64_t(q.i64(14));
    j.resources.peak_pids = uint64_t(q.i64(15));
    j.denial_count = uint64_t(q.i64(16));
    j.uid = int(q.i64(17));
    j.pid = int(q.i64(18));
    j.cgroup = q.text(19);
    j.accelerator = q.text(20);
    auto info = parse_column(q.text(21), "jobs.info", j.id);
    if (!info) return std::unexpected(info.error());
    j.info = std::move(*info);
    j.policy_name = q.text(22);
    j.policy_version = int(q.opt_i64(23).value_or(0));
    j.policy_sha256 = q.text(24);
    j.replay_of = q.opt_i64(25).value_or(0);
    j.learn = q.i64(26) != 0;
    auto rec = parse_column(q.text(27), "jobs.recording", j.id);
    if (!rec) return std::unexpected(rec.error());
    j.recording = std::move(*rec);
    return j;
}

constexpr const char* kPolicySelect = "SELECT id, name, version, sha256, toml, created_ns FROM policies";

PolicyRecord read_policy(const sql::Query& q) {
    PolicyRecord p;
    p.id = q.i64(0);
    p.name = q.text(1);
    p.version = int(q.i64(2));
    p.sha256 = q.text(3);
    p.toml = q.text(4);
    p.created_ns = q.i64(5);
    return p;
}

std::unexpected<Error> read_only_refusal(const char* op) {
    return fail(std::string("store is open read-only: ") + op + " refused");
}

}  // namespace

struct Store::Impl {
    // The watchers' hook: set by the loop thread while the writer thread may
    // already commit, so it is read and written under hook_mu (a copy is
    // called outside the lock).
    mutable std::mutex hook_mu;
    std::shared_ptr<const std::function<void(const Committed&)>> commit_hook;
    bool has_hook() const {
        std::lock_guard lk(hook_mu);
        return commit_hook != nullptr;
    }
    void committed(const Committed& c) const {
        std::shared_ptr<const std::function<void(const Committed&)>> h;
        {
            std::lock_guard lk(hook_mu);
            h = commit_hook;
        }
        if (h && *h) (*h)(c);
    }

    std::string path;
    bool read_only = false;
    int version = 0;

    // --- writer connection (absent when read-only) ---
    std::mutex wmu;
    sql::Db writer;

    // Policy rows already stored, by name NUL sha256 (under wmu): a policy
    // version's row never changes and is never deleted, so `run` after `run`
    // with the same policy finds its id here instead of in a transaction.
    // Bounded: kKnownPolicies rows; the one first put goes first.
    static constexpr size_t kKnownPolicies = 16;
    std::map<std::string, PolicyRecord> known_policies;
    std::deque<std::string> known_order;
    void remember_policy(const PolicyRecord& p) {
        std::string key = p.name + '\0' + p.sha256;
        if (known_policies.count(key)) return;
        if (known_policies.size() >= kKnownPolicies) {
            known_policies.erase(known_order.front());
            known_order.pop_front();
        }
        known_policies.emplace(key, p);
        known_order.push_back(std::move(key));
    }

    // --- reader pool ---
    std::string reader_path;  // plain path, or a "file:" URI for read-only opens
    int reader_flags = 0;
    std::mutex rmu;
    std::condition_variable rcv;
    std::vector<std::unique_ptr<sql::Db>> idle_readers;
    size_t readers_open = 0;

    // --- append queue ---
    mutable std::mutex qmu;
    std::condition_variable qcv;       // wakes the writer thread
    std::condition_variable done_cv;   // wakes flush()
    struct Queued {
        uint64_t seq;    // sequence number of its append()
        uint64_t bytes;  // approx_event_bytes, for the queue's byte accounting
        Event ev;
    };
    std::deque<Queued> queue;
    size_t capacity = 1;
    uint64_t bytes_capacity = 1;
    uint64_t queued_bytes = 0;
    // What each job has in the queue now (jobs with nothing queued have no
    // entry, so the map is as small as the set of jobs with queued events).
    struct Share {
        size_t events = 0;
        uint64_t bytes = 0;
    };
    std::map<int64_t, Share> shares;
    uint64_t refused = 0;
    uint64_t next_seq = 1;   // sequence number of the next append()
    uint64_t done_seq = 0;   // every append with seq <= done_seq is committed or accounted as dropped
    bool stopping = false;
    bool writer_idle = false;
    bool writer_exited = false;
    std::map<int64_t, JobDrops> drops;
    uint64_t written = 0, dropped = 0, batches = 0;
    std::thread thread;

    // Under qmu.
    void enqueue(uint64_t bytes, Event&& ev) {
        Share& sh = shares[ev.job];
        ++sh.events;
        sh.bytes += bytes;
        queued_bytes += bytes;
        queue.push_back(Queued{next_seq - 1, bytes, std::move(ev)});
    }
    using Batch = std::vector<std::pair<uint64_t, Event>>;  // (append sequence number, event)

    // Committed events are freed by the threads that append, which made them.
    // Freed on the writer thread, a typed denial's allocations went back to
    // the producer's malloc arena under that arena's lock, which the producer
    // takes as often for its next rows: perf of store_bench showed the writer
    // waiting for it (issue 15, row 4a). So the writer hands a committed
    // batch over here; each append()/offer() frees a few of its events after
    // it lets go of qmu; the writer takes the vector back (keeping its
    // capacity) once all are freed, and frees what is left itself before it
    // sleeps (the queue is empty: nobody is making rows to contend with).
    // Holds at most one batch (kMaxBatch rows, kMaxBatchBytes).
    Batch grave;
    size_t grave_claimed = 0;            // under qmu: events handed to a thread to free
    std::atomic<size_t> grave_freed{0};  // of those, freed (grave is not touched while any are not)
    static constexpr size_t kGraveStep = 8;  // events one append()/offer() frees
    std::chrono::milliseconds grave_idle{2};  // under qmu: idle this long, the writer frees the rest (test seam)

    // Under qmu: the caller frees [first, second) after unlocking.
    std::pair<size_t, size_t> claim_grave(size_t n) {
        const size_t b = grave_claimed, e = std::min(grave.size(), b + std::min(n, grave.size()));
        grave_claimed = e;
        return {b, e};
    }
    // Without qmu: the claimed events released; the writer may reuse the
    // vector only once every claimed event is counted here.
    void free_grave(std::pair<size_t, size_t> r) {
        if (r.first == r.second) return;
        for (size_t i = r.first; i < r.second; ++i) grave[i].second = Event{};
        grave_freed.fetch_add(r.second - r.first, std::memory_order_release);
    }
    // Under qmu: every event handed over is freed.
    bool grave_empty() const {
        return grave_claimed == grave.size() && grave_freed.load(std::memory_order_acquire) == grave.size();
    }
    // Under qmu: the front of the queue leaves it, moved straight into `batch`
    // (one move, not two). Returns its approximate bytes. The batch's slot is
    // made first: if that allocation throws, the event and its accounting
    // both stay in the queue (counted off before, the next dequeue would
    // count it off again and wrap queued_bytes).
    uint64_t dequeue_into(Batch& batch) {
        Queued& q = queue.front();
        const int64_t job = q.ev.job;
        batch.emplace_back(q.seq, std::move(q.ev));
        const uint64_t bytes = q.bytes;
        queued_bytes -= bytes;
        auto it = shares.find(job);
        if (it != shares.end()) {
            it->second.bytes -= bytes;
            if (--it->second.events == 0) shares.erase(it);
        }
        queue.pop_front();
        return bytes;
    }

    ~Impl() {
        idle_readers.clear();
    }

    // A reader connection borrowed from the pool, returned on destruction.
    class Lease {
    public:
        Lease(Impl* impl, std::unique_ptr<sql::Db> db) : m_impl(impl), m_db(std::move(db)) {}
        Lease(Lease&&) noexcept = default;
        Lease& operator=(Lease&&) = delete;
        ~Lease() {
            if (!m_db) return;
            std::lock_guard lk(m_impl->rmu);
            m_impl->idle_readers.push_back(std::move(m_db));
            m_impl->rcv.notify_one();
        }
        sql::Db& operator*() { return *m_db; }
        sql::Db* operator->() { return m_db.get(); }

    private:
        Impl* m_impl;
        std::unique_ptr<sql::Db> m_db;
    };

    Result<std::unique_ptr<sql::Db>> open_reader() {
        auto db = sql::Db::open(reader_path, reader_flags);
        if (!db) return std::unexpected(db.error());
        sqlite3_busy_timeout(db->get(), kBusyTimeoutMs);
        // Belt and braces: even a bug cannot write through a reader.
        if (auto r = db->exec("PRAGMA query_only=ON", "PRAGMA query_only=ON"); !r) return std::unexpected(r.error());
        return std::make_unique<sql::Db>(std::move(*db));
    }

    Result<Lease> reader() {
        std::unique_lock lk(rmu);
        for (;;) {
            if (!idle_readers.empty()) {
                auto db = std::move(idle_readers.back());
                idle_readers.pop_back();
                return Lease(this, std::move(db));
            }
            if (readers_open < kMaxReaders) {
                ++readers_open;
                lk.unlock();
                auto db = open_reader();
                if (!db) {
                    lk.lock();
                    --readers_open;
                    rcv.notify_one();
                    return std::unexpected(db.error());
                }
                return Lease(this, std::move(*db));
            }
            rcv.wait(lk);
        }
    }

    // --- writer thread ---

    std::array<DataEncoder, kRowsPerInsert> encoders;  // the writer's, one per row of an INSERT, under wmu
    std::vector<std::pair<uint64_t, Event>> batch_slots;  // the writer thread's (writer_loop)
    // (job, syscall) -> sum of counts. Looked up with a string_view key: a
    // row whose pair is already there costs no allocation.
    struct TotalsLess {
        using is_transparent = void;
        template <class A, class B>
        bool operator()(const A& a, const B& b) const {
            if (a.first != b.first) return a.first < b.first;
            return std::string_view(a.second) < std::string_view(b.second);
        }
    };
    using Totals = std::map<std::pair<int64_t, std::string>, uint64_t, TotalsLess>;
    static void add_total(Totals& totals, int64_t job, std::string_view syscall, uint64_t count) {
        const std::pair<int64_t, std::string_view> key{job, syscall};
        auto it = totals.lower_bound(key);
        if (it == totals.end() || TotalsLess{}(key, it->first))
            it = totals.emplace_hint(it, std::pair<int64_t, std::string>{job, std::string(syscall)}, 0);
        it->second += count;
    }

    // Inserts one event with ins (the batch's INSERT INTO events, reused row
    // after row); *rc gets SQLite's result code. A stored denial is added to
    // *totals (job, syscall) -> sum of counts. The text parameters are bound
    // without a copy: the encoder's buffer and the event outlive the step.
    Result<void> insert_event(sql::Query& ins, const Event& ev, int* rc, Totals* totals) {
        return insert_rows(ins, 1, [&](size_t) -> const Event& { return ev; }, rc, totals);
    }

    // kRowsPerInsert events with one execution of ins (kInsertEvents). When
    // *rc is a constraint failure, none of them was inserted (SQLite backs
    // out the whole statement) and *totals is unchanged.
    Result<void> insert_group(sql::Query& ins, const std::pair<uint64_t, Event>* rows, int* rc, Totals* totals) {
        return insert_rows(ins, kRowsPerInsert, [&](size_t i) -> const Event& { return rows[i].second; }, rc, totals);
    }

    // n rows (1, or kRowsPerInsert for the grouped INSERT) with one execution
    // of ins; row i is bound at parameters 6i+1..6i+6 and encoded by
    // encoders[i], so every text stays valid until the step.
    template <class EventAt>
    Result<void> insert_rows(sql::Query& ins, size_t n, EventAt&& event_at, int* rc, Totals* totals) {
        std::optional<std::string_view> syscall[kRowsPerInsert];
        for (size_t i = 0; i < n; ++i) {
            const Event& ev = event_at(i);
            std::string_view data = encoders[i].encode(ev, &syscall[i]);
            const int b = int(i) * 6;
            ins.bind(b + 1, ev.job).bind(b + 2, ev.time_ns).bind_static(b + 3, kind_name(ev.kind)).bind(b + 4, ev.count);
            if (syscall[i])
                ins.bind_static(b + 5, *syscall[i]);
            else
                ins.bind(b + 5, std::nullopt);
            ins.bind_static(b + 6, data);
        }
        auto r = ins.run();
        *rc = ins.rc();
        ins.reset();
        if (r)
            for (size_t i = 0; i < n; ++i)
                if (const Event& ev = event_at(i); ev.kind == EventKind::Denial)
                    add_total(*totals, ev.job, syscall[i].value_or(""), ev.count);
        return r;
    }

    // Under qmu: moves events from the front of the queue into batch, within
    // the batch limits (rows and approximate bytes).
    void pull(Batch& batch, uint64_t& batch_bytes) {
        while (!queue.empty() && batch.size() < kMaxBatch && (batch.empty() || batch_bytes < kMaxBatchBytes)) {
            batch_bytes += dequeue_into(batch);
        }
    }
    // Under qmu: every append up to this sequence number is in a batch taken
    // from the queue or in the drop records.
    uint64_t taken_seq() const { return queue.empty() ? next_seq - 1 : queue.front().seq - 1; }

    // One transaction: the batch, then one `limit` event per job with drops,
    // then the denial_totals of the rows actually inserted. An event whose job
    // does not exist (foreign key) is skipped and counted in *rejected; any
    // other failure rolls the whole transaction back.
    // Group commit: while the batch carries no drop records, events queued
    // meanwhile join the open transaction (within the batch limits) before it
    // commits, and *done moves up to them. A producer faster than the writer
    // then costs one commit per batch limit rather than one per wake-up (a
    // commit rewrites every index page the rows touched: with small batches it
    // was most of the writer's time); a quiet queue still commits at once.
    Result<void> write_batch(Batch& batch, uint64_t* batch_bytes, uint64_t* done,
                             const std::map<int64_t, JobDrops>& job_drops, uint64_t* rejected) {
        std::lock_guard lk(wmu);
        struct Trim {
            Impl* d;
            ~Trim() {
                for (auto& e : d->encoders) e.trim();
            }
        } trim{this};
        try {
            Totals totals;
            auto tx = sql::Transaction::begin(writer);
            if (!tx) return std::unexpected(tx.error());
            // One statement lookup per batch, not per row.
            auto ins = writer.query("INSERT INTO events", kInsertEvent);
            if (!ins) return std::unexpected(ins.error());
            auto group = writer.query("INSERT INTO events", kInsertEvents);  // same words in a recorded error
            if (!group) return std::unexpected(group.error());
            auto one = [&](const Event& ev) -> Result<void> {
                int rc = SQLITE_OK;
                if (auto r = insert_event(*ins, ev, &rc, &totals); !r) {
                    if (!sql::is_constraint(rc)) return r;
                    ++*rejected;
                }
                return {};
            };
            for (size_t next = 0;;) {
                while (next < batch.size()) {
                    if (batch.size() - next >= kRowsPerInsert) {
                        int rc = SQLITE_OK;
                        auto r = insert_group(*group, &batch[next], &rc, &totals);
                        if (!r && !sql::is_constraint(rc)) return r;
                        if (r) {
                            next += kRowsPerInsert;
                            continue;
                        }
                        // One of them was refused (its job is unknown) and the
                        // statement backed out: these rows one by one, so only
                        // the refused are left out.
                        for (const size_t end = next + kRowsPerInsert; next < end; ++next)
                            if (auto r1 = one(batch[next].second); !r1) return r1;
                        continue;
                    }
                    if (auto r = one(batch[next].second); !r) return r;
                    ++next;
                }
                if (!job_drops.empty()) break;
                // Lock order: wmu, then qmu for O(1) work per event (no thread
                // holds qmu while it waits for wmu).
                std::lock_guard qlk(qmu);
                if (!drops.empty()) break;  // their limit events come first: commit, write them next
                pull(batch, *batch_bytes);
                if (next == batch.size()) break;
                *done = taken_seq();
            }
            for (const auto& [job, d] : job_drops) {
                int rc = SQLITE_OK;
                if (d.overflow.events) {
                    Event ev = make_limit_event(job, d.overflow, "event-queue-overflow", nullptr);
                    auto r = insert_event(*ins, ev, &rc, &totals);
                    if (!r && !sql::is_constraint(rc)) return r;  // constraint: the job is unknown, nothing to tell
                }
                if (d.write_failed.events) {
                    Event ev = make_limit_event(job, d.write_failed, "event-write-failed", &d.error);
                    auto r = insert_event(*ins, ev, &rc, &totals);
                    if (!r && !sql::is_constraint(rc)) return r;
                }
            }
            for (const auto& [key, count] : totals) {
                auto q = writer.query("INSERT INTO denial_totals",
                                      "INSERT INTO denial_totals(job_id, syscall, count) VALUES (?1, ?2, ?3)"
                                      " ON CONFLICT (job_id, syscall) DO UPDATE SET count = count + excluded.count");
                if (!q) return std::unexpected(q.error());
                q->bind(1, key.first).bind(2, key.second).bind(3, count);
                if (auto r = q->run(); !r) return r;
            }
            return tx->commit();
        } catch (const std::exception& e) {  // bad_alloc; nothing else throws here
            return fail(std::string("writing events: ") + e.what());
        }
    }

    void writer_loop() {
        std::unique_lock lk(qmu);
        bool failing = false;  // the last batch failed: retry the drop records after a pause
        for (;;) {
            auto ready = [&] { return stopping || !queue.empty() || (!failing && !drops.empty()); };
            if (!ready() && grave_claimed < grave.size()) {
                // Nothing to write: the rest of the last batch is ours to free
                // once no rows came for a moment (a producer woken by flush()
                // is making its next rows now: freeing at once contended with it).
                writer_idle = true;
                qcv.wait_for(lk, grave_idle, ready);
                writer_idle = false;
                if (!ready()) {
                    auto r = claim_grave(grave.size());
                    lk.unlock();
                    free_grave(r);
                    lk.lock();
                }
                continue;
            }
            writer_idle = true;
            if (failing)
                qcv.wait_for(lk, kRetryDelay, ready);
            else
                qcv.wait(lk, ready);
            writer_idle = false;
            if (queue.empty() && drops.empty()) {
                if (stopping) break;
                continue;
            }

            // The writer's batch array keeps its capacity from batch to batch
            // (at most kMaxBatch slots, ~320 KiB: a typed denial is behind a pointer): growing
            // it anew while group commit pulls rows moved every event ~twice.
            Batch& batch = batch_slots;
            batch.reserve(std::min(queue.size(), kMaxBatch));
            uint64_t batch_bytes = 0;
            pull(batch, batch_bytes);
            auto job_drops = std::exchange(drops, {});
            // Everything up to here is in this batch or in job_drops.
            uint64_t done = taken_seq();
            lk.unlock();

            uint64_t rejected = 0;
            auto r = write_batch(batch, &batch_bytes, &done, job_drops, &rejected);

            if (r && has_hook()) {
                Committed c;
                for (const auto& [seq, ev] : batch) c.event_jobs.push_back(ev.job);
                for (const auto& [job, jd] : job_drops) c.event_jobs.push_back(job);
                std::sort(c.event_jobs.begin(), c.event_jobs.end());
                c.event_jobs.erase(std::unique(c.event_jobs.begin(), c.event_jobs.end()), c.event_jobs.end());
                committed(c);
            }
            lk.lock();
            if (r) {
                failing = false;
                written += batch.size() - rejected;
                dropped += rejected;
                ++batches;
            } else {
                // Rolled back: nothing of this transaction is in the database.
                // Its events are lost (count them), the drop records are kept
                // and retried with the next batch or after kRetryDelay.
                failing = true;
                for (auto& [job, d] : job_drops) drops[job].merge(d);
                for (const auto& [seq, ev] : batch) {
                    auto& jd = drops[ev.job];
                    jd.write_failed.add(ev);
                    jd.error = r.error().message;
                }
                dropped += batch.size();
            }
            done_seq = std::max(done_seq, done);
            done_cv.notify_all();
            if (!r && stopping && queue.empty()) break;  // shutting down and the disk still refuses: give up
            // The batch's events go to the producers to free (see grave) when
            // the last batch handed over is all freed; the vector they come
            // back in becomes the next batch's. Otherwise they are freed here,
            // without qmu: append() must not wait for thousands of frees.
            if (grave_empty()) {
                // batch becomes the old grave, whose events are all released
                // already: its clear() below, without qmu, is cheap.
                std::swap(grave, batch);
                grave_claimed = 0;
                grave_freed.store(0, std::memory_order_relaxed);
            }
            lk.unlock();
            batch.clear();
            job_drops = {};
            lk.lock();
        }
        writer_exited = true;
        done_seq = next_seq - 1;
        done_cv.notify_all();
    }
};

Store::Store() : m_impl(std::make_unique<Impl>()) {}

Store::~Store() {
    if (!m_impl) return;
    Impl& d = *m_impl;
    if (d.thread.joinable()) {
        {
            std::lock_guard lk(d.qmu);
            d.stopping = true;
        }
        d.qcv.notify_all();
        d.thread.join();  // the writer drains the queue before it exits
        std::lock_guard lk(d.wmu);
        (void)d.writer.exec("PRAGMA optimize", "PRAGMA optimize");  // cheap; keeps planner stats fresh
    }
}

Result<std::unique_ptr<Store>> Store::open(const std::string& db_path, size_t queue_capacity) {
    QueueLimits l;
    l.events = queue_capacity;
    return open(db_path, l);
}

Result<std::unique_ptr<Store>> Store::open(const std::string& db_path, QueueLimits limits) {
    std::unique_ptr<Store> s(new Store());
    Impl& d = *s->m_impl;
    d.path = db_path;
    d.capacity = std::max<size_t>(1, limits.events);
    d.bytes_capacity = std::max<uint64_t>(1, limits.bytes);

    if (auto r = create_db_file(db_path); !r) return std::unexpected(r.error());
    auto w = sql::Db::open(db_path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_NOMUTEX);
    if (!w) return std::unexpected(w.error());
    d.writer = std::move(*w);
    if (auto r = configure_writer(d.writer); !r) return std::unexpected(r.error().wrap("opening " + db_path));
    auto v = schema::migrate(d.writer, db_path);
    if (!v) return std::unexpected(v.error());
    d.version = *v;

    d.reader_path = db_path;
    d.reader_flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW | SQLITE_OPEN_NOMUTEX;
    {
        // Open one reader now so a problem shows at open, not at the first query.
        auto lease = d.reader();
        if (!lease) return std::unexpected(lease.error().wrap("opening " + db_path));
    }

    try {
        d.thread = std::thread([&d] { d.writer_loop(); });
    } catch (const std::system_error& e) {
        return fail(std::string("starting the store writer thread: ") + e.what());
    }
    return s;
}

Result<std::unique_ptr<Store>> Store::open_read_only(const std::string& db_path) {
    std::unique_ptr<Store> s(new Store());
    Impl& d = *s->m_impl;
    d.path = db_path;
    d.read_only = true;
    // mode=ro: SQLite never writes the database (it may still create the -shm
    // index next to it when the directory is writable, as WAL readers need one).
    d.reader_path = sql::read_only_uri(db_path);
    d.reader_flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX;
    {
        auto lease = d.reader();
        if (!lease) return std::unexpected(lease.error().wrap("opening " + db_path + " read-only"));
        auto v = schema::check_read_only(**lease, db_path);
        if (!v) {
            // A valid SQLite file without Moat's tables is, in practice, a
            // copy of moat.db taken without its -wal: say so and what to do.
            Error e = v.error();
            // Only the empty case (schema::check_read_only's "no Moat schema"):
            // another application's database is not a copy missing its WAL.
            if (e.message.find("(no Moat schema)") != std::string::npos) {
                if (auto hint = wal_hint(db_path); !hint.empty()) e.message += ". " + hint;
            }
            return std::unexpected(e);
        }
        d.version = *v;
    }
    {
        std::lock_guard lk(d.qmu);
        d.writer_exited = true;
    }
    return s;
}

int Store::schema_version() const { return m_impl->version; }

// ---------------------------------------------------------------- policies

Result<PolicyRecord> Store::put_policy(const std::string& name, const std::string& toml, const std::string& sha256) {
    Impl& d = *m_impl;
    if (d.read_only) return read_only_refusal("put_policy");
    if (name.empty()) return fail("put_policy: empty policy name");
    if (sha256.empty()) return fail("put_policy(\"" + name + "\"): empty sha256");
    std::unique_lock lk(d.wmu);
    if (auto k = d.known_policies.find(name + '\0' + sha256); k != d.known_policies.end()) return k->second;
    auto tx = sql::Transaction::begin(d.writer);
    if (!tx) return std::unexpected(tx.error());
    {
        auto q = d.writer.query("SELECT FROM policies", std::string(kPolicySelect) + " WHERE name = ?1 AND sha256 = ?2");
        if (!q) return std::unexpected(q.error());
        q->bind(1, name).bind(2, sha256);
        auto row = q->step();
        if (!row) return std::unexpected(row.error());
        if (*row) {  // already stored; tx rolls back a transaction that wrote nothing
            PolicyRecord p = read_policy(*q);
            d.remember_policy(p);
            return p;
        }
    }
    int64_t next = 1;
    {
        auto q = d.writer.query("SELECT max(version) FROM policies",
                                "SELECT coalesce(max(version), 0) + 1 FROM policies WHERE name = ?1");
        if (!q) return std::unexpected(q.error());
        q->bind(1, name);
        auto row = q->step();
        if (!row) return std::unexpected(row.error());
        if (*row) next = q->i64(0);
    }
    PolicyRecord p{0, name, int(next), sha256, toml, now_realtime_ns()};
    {
        auto q = d.writer.query("INSERT INTO policies",
                                "INSERT INTO policies(name, version, sha256, toml, created_ns) VALUES (?1, ?2, ?3, ?4, ?5)");
        if (!q) return std::unexpected(q.error());
        q->bind(1, p.name).bind(2, p.version).bind(3, p.sha256).bind(4, p.toml).bind(5, p.created_ns);
        if (auto r = q->run(); !r) return std::unexpected(r.error());
        p.id = d.writer.last_insert_rowid();
    }
    if (auto r = tx->commit(); !r) return std::unexpected(r.error());
    d.remember_policy(p);
    lk.unlock();
    d.committed(Committed{{}, {}, true});
    return p;
}

Result<PolicyRecord> Store::get_policy(int64_t id) {
    auto db = m_impl->reader();
    if (!db) return std::unexpected(db.error());
    auto q = (*db)->query("SELECT FROM policies", std::string(kPolicySelect) + " WHERE id = ?1");
    if (!q) return std::unexpected(q.error());
    q->bind(1, id);
    auto row = q->step();
    if (!row) return std::unexpected(row.error());
    if (!*row) return fail("policy " + std::to_string(id) + " not found");
    return read_policy(*q);
}

Result<std::vector<PolicyRecord>> Store::list_policies() {
    auto db = m_impl->reader();
    if (!db) return std::unexpected(db.error());
    auto q = (*db)->query("SELECT FROM policies", std::string(kPolicySelect) + " ORDER BY name, version");
    if (!q) return std::unexpected(q.error());
    std::vector<PolicyRecord> out;
    for (;;) {
        auto row = q->step();
        if (!row) return std::unexpected(row.error());
        if (!*row) break;
        out.push_back(read_policy(*q));
    }
    return out;
}

// ---------------------------------------------------------------- jobs

Result<int64_t> Store::create_job(JobRecord& job) {
    Impl& d = *m_impl;
    if (d.read_only) return read_only_refusal("create_job");
    if (job.started_ns == 0) job.started_ns = now_realtime_ns();
    std::unique_lock lk(d.wmu);
    auto q = d.writer.query(
        "INSERT INTO jobs",
        "INSERT INTO jobs(policy_id, tier, argv, env, cwd, started_ns, ended_ns, state, exit_code, signal, cause,"
        " detail, cpu_time_ns, peak_memory_bytes, peak_pids, denial_count, uid, pid, cgroup, accelerator, info,"
        " replay_of, learn, recording)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21,"
        " ?22, ?23, ?24)");
    if (!q) return std::unexpected(q.error());
    q->bind(1, job.policy_id ? std::optional<int64_t>(job.policy_id) : std::nullopt)
        .bind(2, job.tier)
        .bind(3, dump(json(job.argv)))
        .bind(4, dump(json(job.env)))
        .bind(5, job.cwd)
        .bind(6, job.started_ns)
        .bind(7, job.ended_ns)
        .bind(8, job.state)
        .bind(9, job.exit_code)
        .bind(10, job.signal)
        .bind(11, job.cause)
        .bind(12, job.detail)
        .bind(13, job.resources.cpu_time_ns)
        .bind(14, job.resources.peak_memory_bytes)
        .bind(15, job.resources.peak_pids)
        .bind(16, job.denial_count)
        .bind(17, job.uid)
        .bind(18, job.pid)
        .bind(19, job.cgroup)
        .bind(20, job.accelerator)
        .bind(21, dump(job.info))
        .bind(22, job.replay_of ? std::optional<int64_t>(job.replay_of) : std::nullopt)
        .bind(23, job.learn ? 1 : 0)
        .bind(24, dump(job.recording));
    if (auto r = q->run(); !r) return std::unexpected(r.error());
    job.id = d.writer.last_insert_rowid();
    lk.unlock();
    d.committed(Committed{{}, {job.id}, false});
    return job.id;
}

Result<void> Store::update_job_runtime(int64_t id, int pid, int uid, const std::string& cgroup, const nlohmann::json& info) {
    Impl& d = *m_impl;
    if (d.read_only) return read_only_refusal("update_job_runtime");
    std::unique_lock lk(d.wmu);
    auto q = d.writer.query("UPDATE jobs (runtime)",
                            "UPDATE jobs SET pid = ?2, uid = ?3, cgroup = ?4, info = ?5, accelerator = ?6 WHERE id = ?1");
    if (!q) return std::unexpected(q.error());
    // The vm tier names its accelerator in the info; the column makes it a
    // first-class field of the job (show's "accelerator").
    const auto acc = info.is_object() ? info.find("accelerator") : info.end();
    const std::string accelerator = info.is_object() && acc != info.end() && acc->is_string() ? acc->get<std::string>() : "";
    q->bind(1, id).bind(2, pid).bind(3, uid).bind(4, cgroup).bind(5, dump(info)).bind(6, accelerator);
    if (auto r = q->run(); !r) return r;
    if (d.writer.changes() == 0) return fail("update_job_runtime: job " + std::to_string(id) + " not found");
    lk.unlock();
    d.committed(Committed{{}, {id}, false});
    return {};
}

namespace {
// The UPDATE that ends a job's row (finish_job, and put_outputs_and_recording
// when given the finish).
Result<void> write_finish(sql::Db& db, const JobRecord& job) {
    auto q = db.query(
        "UPDATE jobs (finish)",
        "UPDATE jobs SET state = 'finished', ended_ns = ?2, exit_code = ?3, signal = ?4, cause = ?5, detail = ?6,"
        " cpu_time_ns = ?7, peak_memory_bytes = ?8, peak_pids = ?9, denial_count = ?10,"
        " info = coalesce(?11, info) WHERE id = ?1");
    if (!q) return std::unexpected(q.error());
    // What was learned at the end (the tier's counts, a learn replay's paths)
    // is part of this one write; an empty info (never set here) keeps the column.
    std::optional<std::string> info;
    if (job.info.is_object() && !job.info.empty()) info = dump(job.info);
    q->bind(1, job.id)
        .bind(2, job.ended_ns.value_or(now_realtime_ns()))
        .bind(3, job.exit_code)
        .bind(4, job.signal)
        .bind(5, job.cause)
        .bind(6, job.detail)
        .bind(7, job.resources.cpu_time_ns)
        .bind(8, job.resources.peak_memory_bytes)
        .bind(9, job.resources.peak_pids)
        .bind(10, job.denial_count)
        .bind(11, info);
    if (auto r = q->run(); !r) return r;
    if (db.changes() == 0) return fail("finish_job: job " + std::to_string(job.id) + " not found");
    return {};
}
}  // namespace

Result<void> Store::finish_job(const JobRecord& job) {
    Impl& d = *m_impl;
    if (d.read_only) return read_only_refusal("finish_job");
    std::unique_lock lk(d.wmu);
    if (auto r = write_finish(d.writer, job); !r) return r;
    lk.unlock();
    d.committed(Committed{{}, {job.id}, false});
    return {};
}

Result<JobRecord> Store::get_job(int64_t id) {
    auto db = m_impl->reader();
    if (!db) return std::unexpected(db.error());
    auto q = (*db)->query("SELECT FROM jobs", std::string(kJobSelect) + " WHERE j.id = ?1");
    if (!q) return std::unexpected(q.error());
    q->bind(1, id);
    auto row = q->step();
    if (!row) return std::unexpected(row.error());
    if (!*row) return fail("job " + std::to_string(id) + " not found");
    return read_job(*q);
}

namespace {
Result<std::vector<JobRecord>> collect_jobs(sql::Query& q) {
    std::vector<JobRecord> out;
    for (;;) {
        auto row = q.step();
        if (!row) return std::unexpected(row.error());
        if (!*row) break;
        auto j = read_job(q);
        if (!j) return std::unexpected(j.error());
        out.push_back(std::move(*j));
    }
    return out;
}
}  // namespace

Result<std::vector<JobRecord>> Store::list_jobs(int limit, int64_t before_id) {
    if (limit <= 0) limit = 100;
    limit = std::min(limit, kMaxJobListLimit);
    auto db = m_impl->reader();
    if (!db) return std::unexpected(db.error());
    // Keyset paging: "id < before" (INT64_MAX for the first page) walks the
    // primary key backwards and stops after `limit` rows.
    auto q = (*db)->query("SELECT FROM jobs", std::string(kJobSelect) + " WHERE j.id < ?1 ORDER BY j.id DESC LIMIT ?2");
    if (!q) return std::unexpected(q.error());
    q->bind(1, before_id > 0 ? before_id : INT64_MAX).bind(2, limit);
    return collect_jobs(*q);
}

Result<std::vector<JobRecord>> Store::running_jobs() {
    auto db = m_impl->reader();
    if (!db) return std::unexpected(db.error());
    auto q = (*db)->query("SELECT FROM jobs", std::string(kJobSelect) + " WHERE j.state = 'running' ORDER BY j.id");
    if (!q) return std::unexpected(q.error());
    return collect_jobs(*q);
}

// ---------------------------------------------------------------- recordings

Result<void> Store::put_blob(const std::string& sha256, uint64_t size) { return put_blobs({{sha256, size}}); }

namespace {
// The blob rows of put_blobs, for a caller that holds the writer and an open transaction.
Result<void> insert_blobs(sql::Db& w, const std::vector<std::pair<std::string, uint64_t>>& blobs) {
    const int64_t now = now_realtime_ns();
    for (const auto& [sha256, size] : blobs) {
        auto q = w.query("INSERT INTO blobs", "INSERT OR IGNORE INTO blobs(sha256, size, created_ns) VALUES (?1, ?2, ?3)");
        if (!q) return std::unexpected(q.error());
        q->bind(1, sha256).bind(2, size).bind(3, now);
        if (auto r = q->run(); !r) return r;
    }
    return {};
}
}  // namespace

Result<void> Store::put_blobs(const std::vector<std::pair<std::string, uint64_t>>& blobs) {
    Impl& d = *m_impl;
    if (d.read_only) return read_only_refusal("put_blob");
    if (blobs.empty()) return {};
    std::lock_guard lk(d.wmu);
    // One transaction (one commit) for a directory input's many files.
    auto tx = sql::Transaction::begin(d.writer);
    if (!tx) return std::unexpected(tx.error());
    if (auto r = insert_blobs(d.writer, blobs); !r) return r;
    return tx->commit();
}

namespace {
// The statements of set_recording and put_output, for a caller that holds the
// writer (and, for set_recording's, an open transaction).
Result<void> write_recording(sql::Db& w, int64_t job, const json& recording, const std::vector<std::string>& blobs) {
    auto q = w.query("UPDATE jobs (recording)", "UPDATE jobs SET recording = ?2 WHERE id = ?1");
    if (!q) return std::unexpected(q.error());
    q->bind(1, job).bind(2, dump(recording));
    if (auto r = q->run(); !r) return r;
    if (w.changes() == 0) return fail("set_recording: job " + std::to_string(job) + " not found");
    for (const auto& sha : blobs) {
        auto b = w.query("INSERT INTO job_blobs", "INSERT OR IGNORE INTO job_blobs(job_id, sha256) VALUES (?1, ?2)");
        if (!b) return std::unexpected(b.error());
        b->bind(1, job).bind(2, sha);
        if (auto r = b->run(); !r) return r;
    }
    return {};
}

Result<void> write_output(sql::Db& w, int64_t job, const std::string& stream, const JobOutput& out) {
    auto q = w.query("INSERT INTO job_output",
                     "INSERT OR REPLACE INTO job_output(job_id, stream, total_bytes, data) VALUES (?1, ?2, ?3, ?4)");
    if (!q) return std::unexpected(q.error());
    // Raw bytes: SQLite keeps TEXT bytes as given and we read them back by length.
    q->bind(1, job).bind(2, stream).bind(3, out.total_bytes).bind(4, std::string_view(out.data));
    return q->run();
}
}  // namespace

Result<void> Store::set_recording(int64_t job, const json& recording, const std::vector<std::string>& blobs) {
    Impl& d = *m_impl;
    if (d.read_only) return read_only_refusal("set_recording");
    std::lock_guard lk(d.wmu);
    auto tx = sql::Transaction::begin(d.writer);
    if (!tx) return std::unexpected(tx.error());
    if (auto r = write_recording(d.writer, job, recording, blobs); !r) return r;
    return tx->commit();
}

Result<void> Store::put_output(int64_t job, const std::string& stream, const JobOutput& out) {
    Impl& d = *m_impl;
    if (d.read_only) return read_only_refusal("put_output");
    std::lock_guard lk(d.wmu);
    return write_output(d.writer, job, stream, out);
}

Result<void> Store::put_outputs_and_recording(int64_t job, const JobOutput& out, const JobOutput& err,
                                              const json& recording, const std::vector<std::string>& blobs,
                                              const std::vector<std::pair<std::string, uint64_t>>& new_blobs,
                                              const JobRecord* finished) {
    Impl& d = *m_impl;
    if (d.read_only) return read_only_refusal("put_outputs_and_recording");
    std::unique_lock lk(d.wmu);
    auto tx = sql::Transaction::begin(d.writer);
    if (!tx) return std::unexpected(tx.error());
    if (finished) {
        if (finished->id != job) return fail("put_outputs_and_recording: the finish is job " + std::to_string(finished->id));
        if (auto r = write_finish(d.writer, *finished); !r) return r;
    }
    if (auto r = insert_blobs(d.writer, new_blobs); !r) return r;
    if (auto r = write_output(d.writer, job, "stdout", out); !r) return r;
    if (auto r = write_output(d.writer, job, "stderr", err); !r) return r;
    if (auto r = write_recording(d.writer, job, recording, blobs); !r) return r;
    if (auto r = tx->commit(); !r) return r;
    lk.unlock();
    if (finished) d.committed(Committed{{}, {job}, false});
    return {};
}

Result<std::optional<JobOutput>> Store::get_output(int64_t job, const std::string& stream) {
    auto db = m_impl->reader();
    if (!db) return std::unexpected(db.error());
    auto q = (*db)->query("SELECT FROM job_output",
                          "SELECT total_bytes, CAST(data AS BLOB) FROM job_output WHERE job_id = ?1 AND stream = ?2");
    if (!q) return std::unexpected(q.error());
    q->bind(1, job).bind(2, stream);
    auto row = q->step();
    if (!row) return std::unexpected(row.error());
    if (!*row) return std::optional<JobOutput>();
    JobOutput o;
    o.total_bytes = uint64_t(q->i64(0));
    o.data = q->text(1);
    return std::optional<JobOutput>(std::move(o));
}

Result<uint64_t> Store::blob_bytes() {
    auto db = m_impl->reader();
    if (!db) return std::unexpected(db.error());
    auto q = (*db)->query("SELECT sum(size) FROM blobs", "SELECT coalesce(sum(size), 0) FROM blobs");
    if (!q) return std::unexpected(q.error());
    auto row = q->step();
    if (!row) return std::unexpected(row.error());
    return uint64_t(q->i64(0));
}

Result<std::vector<std::string>> Store::expire_recordings(int64_t ended_before_ns, uint64_t budget_bytes) {
    Impl& d = *m_impl;
    if (d.read_only) return read_only_refusal("expire_recordings");
    std::lock_guard lk(d.wmu);
    auto tx = sql::Transaction::begin(d.writer);
    if (!tx) return std::unexpected(tx.error());
    auto drop_job = [&](int64_t job, const std::string& why) -> Result<void> {
        auto q = d.writer.query("DELETE FROM job_blobs", "DELETE FROM job_blobs WHERE job_id = ?1");
        if (!q) return std::unexpected(q.error());
        q->bind(1, job);
        if (auto r = q->run(); !r) return r;
        auto u = d.writer.query("UPDATE jobs (evicted)",
                                "UPDATE jobs SET recording = json_set(recording, '$.evicted', ?2) WHERE id = ?1");
        if (!u) return std::unexpected(u.error());
        u->bind(1, job).bind(2, why);
        return u->run();
    };
    // Retention: finished jobs that ended before the cut-off.
    std::vector<int64_t> old;
    {
        auto q = d.writer.query("SELECT expired jobs",
                                "SELECT DISTINCT b.job_id FROM job_blobs b JOIN jobs j ON j.id = b.job_id"
                                " WHERE j.state = 'finished' AND j.ended_ns < ?1");
        if (!q) return std::unexpected(q.error());
        q->bind(1, ended_before_ns);
        for (;;) {
            auto row = q->step();
            if (!row) return std::unexpected(row.error());
            if (!*row) break;
            old.push_back(q->i64(0));
        }
    }
    for (int64_t j : old)
        if (auto r = drop_job(j, "retention (recordings are kept for a limited time)"); !r) return std::unexpected(r.error());
    // Budget: total size of blobs still referenced, oldest finished jobs first.
    auto total_q = [&]() -> Result<uint64_t> {
        auto q = d.writer.query("SELECT referenced bytes",
                                "SELECT coalesce(sum(size), 0) FROM blobs WHERE sha256 IN (SELECT sha256 FROM job_blobs)");
        if (!q) return std::unexpected(q.error());
        auto row = q->step();
        if (!row) return std::unexpected(row.error());
        return uint64_t(q->i64(0));
    };
    for (;;) {
        auto total = total_q();
        if (!total) return std::unexpected(total.error());
        if (*total <= budget_bytes) break;
        auto q = d.writer.query("SELECT oldest recorded job",
                                "SELECT b.job_id FROM job_blobs b JOIN jobs j ON j.id = b.job_id"
                                " WHERE j.state = 'finished' ORDER BY b.job_id LIMIT 1");
        if (!q) return std::unexpected(q.error());
        auto row = q->step();
        if (!row) return std::unexpected(row.error());
        if (!*row) break;  // only running jobs' recordings are left: they stay
        int64_t j = q->i64(0);
        if (auto r = drop_job(j, "size budget (oldest recordings go first)"); !r) return std::unexpected(r.error());
    }
    std::vector<std::string> unused;
    {
        auto q = d.writer.query("SELECT unused blobs",
                                "SELECT sha256 FROM blobs WHERE sha256 NOT IN (SELECT sha256 FROM job_blobs)");
        if (!q) return std::unexpected(q.error());
        for (;;) {
            auto row = q->step();
            if (!row) return std::unexpected(row.error());
            if (!*row) break;
            unused.push_back(q->text(0));
        }
    }
    for (const auto& sha : unused) {
        auto q = d.writer.query("DELETE FROM blobs", "DELETE FROM blobs WHERE sha256 = ?1");
        if (!q) return std::unexpected(q.error());
        q->bind(1, sha);
        if (auto r = q->run(); !r) return std::unexpected(r.error());
    }
    if (auto r = tx->commit(); !r) return std::unexpected(r.error());
    return unused;
}

// ---------------------------------------------------------------- events

void Store::append(Event ev) {
    Impl& d = *m_impl;
    if (ev.time_ns == 0) ev.time_ns = now_realtime_ns();
    std::unique_lock lk(d.qmu);
    d.next_seq++;
    if (d.read_only || d.stopping) {
        ++d.dropped;  // no writer: nobody could ever record a limit event
        return;
    }
    const uint64_t bytes = approx_event_bytes(ev);
    // The whole queue, whatever the shares: what append() carries is what must
    // be kept, and offer() keeps bulk events well below the capacity.
    if (d.queue.size() >= d.capacity || d.queued_bytes + bytes > d.bytes_capacity) {
        d.drops[ev.job].overflow.add(ev);
        ++d.dropped;
    } else {
        d.enqueue(bytes, std::move(ev));
    }
    // Wake the writer only when it sleeps: under load it is busy and the
    // notify (a futex syscall) would be wasted on every append.
    bool wake = d.writer_idle;
    auto grave = d.claim_grave(Impl::kGraveStep);
    lk.unlock();
    if (wake) d.qcv.notify_one();
    d.free_grave(grave);
}

bool Store::offer(Event& ev) {
    Impl& d = *m_impl;
    if (ev.time_ns == 0) ev.time_ns = now_realtime_ns();
    const uint64_t bytes = approx_event_bytes(ev);
    std::unique_lock lk(d.qmu);
    if (d.read_only || d.stopping) {
        ++d.refused;
        return false;
    }
    // Fair share: capacity / (jobs with queued events, this one included, + 1).
    // The +1 keeps a share free for a job that has nothing queued yet: however
    // many jobs flood, together they hold at most n/(n+1) of the queue, so a
    // quiet job's first events always find room.
    auto it = d.shares.find(ev.job);
    const Impl::Share mine = it == d.shares.end() ? Impl::Share{} : it->second;
    const size_t jobs = d.shares.size() + (it == d.shares.end() ? 1 : 0) + 1;
    const bool fits = d.queue.size() < d.capacity && d.queued_bytes + bytes <= d.bytes_capacity &&
                      mine.events < d.capacity / jobs && mine.bytes + bytes <= d.bytes_capacity / jobs;
    if (!fits) {
        ++d.refused;
        return false;
    }
    d.next_seq++;
    d.enqueue(bytes, std::move(ev));
    bool wake = d.writer_idle;
    auto grave = d.claim_grave(Impl::kGraveStep);
    lk.unlock();
    if (wake) d.qcv.notify_one();
    d.free_grave(grave);
    return true;
}

void Store::flush() {
    Impl& d = *m_impl;
    std::unique_lock lk(d.qmu);
    uint64_t target = d.next_seq - 1;
    if (d.writer_idle) d.qcv.notify_one();
    d.done_cv.wait(lk, [&] { return d.done_seq >= target || d.writer_exited; });
}

Result<std::vector<Event>> Store::query_events(const EventQuery& query) {
    EventQuery qy = query;
    if (qy.syscall && qy.kind) {
        // Only denial rows have a syscall column. Dropping the redundant kind
        // term lets the planner take events_syscall_time instead of
        // events_kind_time, which would scan every denial in the time range.
        if (*qy.kind != EventKind::Denial) return std::vector<Event>{};
        qy.kind.reset();
    }
    // One SQL text per combination of filters (at most 32, each cached once).
    std::string sql = std::string(kEventColumns) + " WHERE id > ?1";
    int n = 1;
    auto param = [&](const char* cond) {
        sql += " AND ";
        sql += cond;
        sql += " ?" + std::to_string(++n);
    };
    if (qy.job) param("job_id =");
    if (qy.kind) param("kind =");
    if (qy.syscall) param("syscall =");
    if (qy.since_ns) param("time_ns >=");
    if (qy.until_ns) param("time_ns <");
    sql += " ORDER BY id LIMIT ?" + std::to_string(++n);

    auto db = m_impl->reader();
    if (!db) return std::unexpected(db.error());
    auto q = (*db)->query("SELECT FROM events", sql);
    if (!q) return std::unexpected(q.error());
    int i = 1;
    q->bind(i++, qy.after_id);
    if (qy.job) q->bind(i++, *qy.job);
    if (qy.kind) q->bind(i++, kind_name(*qy.kind));
    if (qy.syscall) q->bind(i++, *qy.syscall);
    if (qy.since_ns) q->bind(i++, *qy.since_ns);
    if (qy.until_ns) q->bind(i++, *qy.until_ns);
    int limit = qy.limit <= 0 ? 1000 : std::min(qy.limit, kMaxQueryLimit);
    q->bind(i++, limit);

    std::vector<Event> out;
    for (;;) {
        auto row = q->step();
        if (!row) return std::unexpected(row.error());
        if (!*row) break;
        auto ev = read_event(*q);
        if (!ev) return std::unexpected(ev.error());
        out.push_back(std::move(*ev));
    }
    return out;
}

Result<uint64_t> Store::count_denials(int64_t job) {
    auto db = m_impl->reader();
    if (!db) return std::unexpected(db.error());
    // denial_totals is kept in step with `events` by the writer (same transaction).
    auto q = (*db)->query("SELECT sum(count) FROM denial_totals",
                          "SELECT coalesce(sum(count), 0) FROM denial_totals WHERE job_id = ?1");
    if (!q) return std::unexpected(q.error());
    q->bind(1, job);
    auto row = q->step();
    if (!row) return std::unexpected(row.error());
    return *row ? uint64_t(q->i64(0)) : 0;
}

Result<std::vector<SyscallCount>> Store::top_syscalls(std::optional<int64_t> job, int limit) {
    if (limit <= 0) limit = 10;
    limit = std::min(limit, kMaxQueryLimit);
    auto db = m_impl->reader();
    if (!db) return std::unexpected(db.error());
    // From the per-(job, syscall) totals: jobs x syscalls rows, not one row per denial.
    // '' collects denials whose syscall had no name; it is not a syscall to rank.
    std::string sql = "SELECT syscall, sum(count) AS n FROM denial_totals WHERE syscall <> ''";
    if (job) sql += " AND job_id = ?2";
    sql += " GROUP BY syscall ORDER BY n DESC, syscall LIMIT ?1";
    auto q = (*db)->query("SELECT top syscalls FROM denial_totals", sql);
    if (!q) return std::unexpected(q.error());
    q->bind(1, limit);
    if (job) q->bind(2, *job);
    std::vector<SyscallCount> out;
    for (;;) {
        auto row = q->step();
        if (!row) return std::unexpected(row.error());
        if (!*row) break;
        out.push_back({q->text(0), uint64_t(q->i64(1))});
    }
    return out;
}

StoreStats Store::stats() const {
    const Impl& d = *m_impl;
    std::lock_guard lk(d.qmu);
    return StoreStats{d.queue.size(), d.written, d.dropped, d.batches, d.queued_bytes, d.refused};
}

void Store::set_commit_hook(std::function<void(const Committed&)> hook) {
    auto h = hook ? std::make_shared<const std::function<void(const Committed&)>>(std::move(hook)) : nullptr;
    std::lock_guard lk(m_impl->hook_mu);
    m_impl->commit_hook = std::move(h);
}

Result<std::string> Store::integrity_check() {
    auto db = m_impl->reader();
    if (!db) return std::unexpected(db.error());
    auto q = (*db)->query("PRAGMA integrity_check", "PRAGMA integrity_check");
    if (!q) return std::unexpected(q.error());
    std::string out;
    for (;;) {
        auto row = q->step();
        if (!row) return std::unexpected(row.error());
        if (!*row) break;
        if (!out.empty()) out += '\n';
        out += q->text(0);
    }
    return out;
}

// ---------------------------------------------------------------- test seam

std::unique_lock<std::mutex> StoreTestAccess::hold_writer(Store& s) { return std::unique_lock(s.m_impl->wmu); }

void StoreTestAccess::set_grave_idle(Store& s, std::chrono::milliseconds idle) {
    std::lock_guard lk(s.m_impl->qmu);
    s.m_impl->grave_idle = idle;
}

Result<int64_t> StoreTestAccess::set_max_page_count(Store& s, int64_t pages) {
    auto& d = *s.m_impl;
    std::lock_guard lk(d.wmu);
    return d.writer.scalar("PRAGMA max_page_count", "PRAGMA max_page_count = " + std::to_string(pages));
}

}  // namespace moat::store
