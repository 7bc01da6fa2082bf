#include "moat/learn/threads.h"

#include "internal.h"

#include <linux/sched.h>

#include <map>
#include <optional>
#include <set>

#include "moat/policy/lint.h"

namespace moat::learn {
namespace {

using nlohmann::json;

const json& sandbox_of(const json& job) {
    static const json none = json::object();
    if (!job.is_object()) return none;
    auto it = job.find("sandbox");
    return it != job.end() && it->is_object() ? *it : none;
}

std::optional<uint64_t> number(const json& j, const char* key) {
    if (!j.is_object()) return std::nullopt;
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer() || it->get<int64_t>() < 0) return std::nullopt;
    return it->get<uint64_t>();
}

// The thread start/exit set and why each call is in it, for the evidence line.
// Checked on Debian 12 (glibc 2.36, x86_64) with `strace -f -e
// inject=clone3:error=ENOSYS` on a program that starts two threads and
// joins them (what moatd's ENOSYS answer makes glibc do). Parent:
// rt_sigprocmask, mmap (stack), mprotect (guard), clone3 -> ENOSYS, clone,
// futex (join). New thread: rseq, set_robust_list, rt_sigprocmask,
// madvise(MADV_DONTNEED) of its stack, exit. munmap frees cached stacks
// once more threads have ended than the cache keeps.
struct ThreadCall {
    const char* name;
    const char* role;
};
constexpr ThreadCall kThreadCalls[] = {
    {"clone", "starts the thread after clone3 is answered ENOSYS (namespace flags are refused by the filter anyway)"},
    {"futex", "pthread_join and every lock shared between threads"},
    {"set_robust_list", "the new thread registers its robust mutex list"},
    {"rseq", "the new thread registers its restartable sequence area"},
    {"rt_sigprocmask", "signals are blocked around the start and when the thread ends"},
    {"madvise", "the ending thread gives back its stack (MADV_DONTNEED)"},
    {"mmap", "the new thread's stack"},
    {"mprotect", "the stack's guard page"},
    {"munmap", "a cached thread stack released"},
    {"exit", "the thread ends (exit, not exit_group)"},
};

}  // namespace

const std::vector<std::string>& thread_start_set() {
    static const std::vector<std::string> s = [] {
        std::vector<std::string> v;
        for (const auto& c : kThreadCalls) v.emplace_back(c.name);
        return v;
    }();
    return s;
}

ThreadPaths thread_paths(const policy::Policy& base, const std::vector<json>& denials, const json& original_job,
                         const json& replay_job) {
    ThreadPaths out;
    const json& rs = sandbox_of(replay_job);
    const json& os = sandbox_of(original_job);
    const json clone3 = rs.contains("clone3") && rs["clone3"].is_object() ? rs["clone3"] : json::object();
    const uint64_t c3_calls = number(clone3, "calls").value_or(0);
    const uint64_t c3_threads = number(clone3, "threads").value_or(0);

    // What the denials say: native names (propose() decides those), clone
    // with CLONE_THREAD, clone3 asking for namespaces.
    std::set<std::string> denied;
    uint64_t clone_threads = 0, clone3_denied = 0;
    for (const auto& e : denials) {
        if (!e.is_object() || e.value("kind", std::string()) != "denial") continue;
        if (e.value("arch", std::string("x86_64")) != "x86_64") continue;
        const std::string name = e.value("syscall", std::string());
        const uint64_t count = e.value("count", uint64_t(1));
        denied.insert(name);
        if (name == "clone" && (detail::arg_value(e, 0) & CLONE_THREAD)) clone_threads += count;
        if (name == "clone3") clone3_denied += count;
    }

    // The thread start/exit set, when the replay started threads.
    if (c3_threads > 0 || clone_threads > 0) {
        std::string why = "the job starts threads: ";
        if (c3_threads > 0)
            why += std::to_string(c3_threads) + " clone3 attempt(s) with CLONE_THREAD answered ENOSYS, glibc then uses clone";
        if (clone_threads > 0)
            why += std::string(c3_threads > 0 ? "; " : "") + std::to_string(clone_threads) +
                   " clone call(s) with CLONE_THREAD";
        why += "; a thread's start and exit make these calls whether or not this run reached them";
        std::map<std::string, std::vector<size_t>> ruled;
        for (size_t i = 0; i < base.seccomp.rules.size(); ++i) ruled[base.seccomp.rules[i].syscall].push_back(i);
        const bool logs_only = base.seccomp.default_action.kind == policy::Action::Kind::Log;
        for (const auto& call : kThreadCalls) {
            const std::string name = call.name, role = call.role;
            if (logs_only || base.seccomp.allowed.contains(name) || denied.contains(name)) continue;
            if (auto r = ruled.find(name); r != ruled.end()) {
                const std::string list = detail::rule_list(r->second);
                out.notes.push_back(name + ": threads need it (" + role + "), but your rule(s) " + list +
                                    " decide " + name + " calls; not proposed: check that they allow what a thread "
                                    "start and exit does");
                continue;
            }
            Addition a;
            a.entry = name;
            a.syscalls = {name};
            a.risk = policy::risk_of(name);
            a.evidence = role + "; " + why;
            out.additions.push_back(std::move(a));
        }
    }

    // clone3 is never proposed; say why whenever the job tried it.
    if (c3_calls > 0 || clone3_denied > 0) {
        std::string seen;
        if (c3_calls > 0)
            seen = std::to_string(c3_calls) + " call(s) answered with ENOSYS (" + std::to_string(c3_threads) +
                   " starting a thread)";
        if (clone3_denied > 0)
            seen += std::string(seen.empty() ? "" : ", ") + std::to_string(clone3_denied) +
                    " asking for new namespaces, recorded as denials";
        out.notes.push_back("clone3: " + seen + "; not proposed: " + policy::clone3_design());
    }

    // CPU counts: one run shows the paths of the CPU count it had.
    const auto rc = number(rs, "cpus"), oc = number(os, "cpus");
    if (rc && (*rc == 1 || (oc && *oc > *rc))) {
        std::string had = "the learn replay ran on " + std::to_string(*rc) + " CPU(s)";
        if (oc && *oc != *rc) had += ", the original job on " + std::to_string(*oc);
        if (const json& l = rs.contains("cpus_learn") ? rs["cpus_learn"] : json(); l.is_object())
            had += " (moatd gave it every CPU its cgroup allows)";
        out.notes.push_back(had + ": the recorded run may not show every threaded or CPU-count dependent path (a "
                            "thread pool sized by the CPU count, a parallel phase, locks that are contended only "
                            "with more CPUs). Learn where the job gets the CPU count the policy will meet (a moatd "
                            "not started under taskset, a cgroup cpuset as wide as production's), then rerun the "
                            "job there a few times under the proposed policy");
    }
    return out;
}

}  // namespace moat::learn
