#include "moat/compiler/seccomp_compiler.h"

#include <linux/audit.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "moat/common/fd.h"

namespace moat::compiler {

namespace {

struct CtxDeleter {
    void operator()(scmp_filter_ctx c) const { seccomp_release(c); }
};
using Ctx = std::unique_ptr<void, CtxDeleter>;

scmp_compare to_scmp(policy::ArgCondition::Op op) {
    using Op = policy::ArgCondition::Op;
    switch (op) {
        case Op::Eq: return SCMP_CMP_EQ;
        case Op::Ne: return SCMP_CMP_NE;
        case Op::Lt: return SCMP_CMP_LT;
        case Op::Le: return SCMP_CMP_LE;
        case Op::Gt: return SCMP_CMP_GT;
        case Op::Ge: return SCMP_CMP_GE;
        case Op::MaskedEq: return SCMP_CMP_MASKED_EQ;
    }
    return SCMP_CMP_EQ;
}

bool holds(const policy::ArgCondition& c, uint64_t v) {
    using Op = policy::ArgCondition::Op;
    switch (c.op) {
        case Op::Eq: return v == c.value;
        case Op::Ne: return v != c.value;
        case Op::Lt: return v < c.value;
        case Op::Le: return v <= c.value;
        case Op::Gt: return v > c.value;
        case Op::Ge: return v >= c.value;
        case Op::MaskedEq: return (v & c.mask) == c.value;
    }
    return false;
}

std::vector<scmp_arg_cmp> conditions(const policy::SeccompRule& r) {
    std::vector<scmp_arg_cmp> out;
    for (const auto& a : r.args) {
        scmp_arg_cmp c{};
        c.arg = a.index;
        c.op = to_scmp(a.op);
        if (a.op == policy::ArgCondition::Op::MaskedEq) {
            c.datum_a = a.mask;
            c.datum_b = a.value;
        } else {
            c.datum_a = a.value;
        }
        out.push_back(c);
    }
    return out;
}

// Syscalls that dominate real workloads; checked first by the filter.
constexpr const char* kHot[] = {"read", "write", "futex", "mmap", "munmap", "close", "fstat", "newfstatat",
                                "lseek", "pread64", "pwrite64", "epoll_wait", "poll", "recvfrom", "sendto",
                                "getpid", "clock_gettime", "brk"};

}  // namespace

Verdict CompiledFilter::decide(int nr, uint32_t arch, const uint64_t args[6]) const {
    if (arch != AUDIT_ARCH_X86_64 || (nr & 0x40000000))
        // Foreign ABI (i386 int $0x80, x32): never judged by the allowlist.
        return {m_default.kind == policy::Action::Kind::Log || m_default.kind == policy::Action::Kind::Allow
                    ? policy::Action{policy::Action::Kind::Errno, EPERM}
                    : m_default,
                "abi"};
    if (auto w = m_watched.find(nr); w != m_watched.end()) {
        // Reached us only to be watched: judge it as the filter would have.
        if (auto ar = m_watched_allow_rules.find(nr); ar != m_watched_allow_rules.end())
            for (const auto& [index, rule] : ar->second) {
                bool all = true;
                for (const auto& c : rule.args)
                    if (c.index > 5 || !holds(c, args[c.index])) { all = false; break; }
                if (all) return {rule.action, "watch"};
            }
        if (w->second) return {policy::Action{policy::Action::Kind::Allow, 0}, "watch"};
    }
    auto it = m_rules.find(nr);
    if (it != m_rules.end()) {
        for (const auto& [index, rule] : it->second) {
            bool all = true;
            for (const auto& c : rule.args)
                if (c.index > 5 || !holds(c, args[c.index])) { all = false; break; }
            if (all) return {rule.action, "seccomp.rule[" + std::to_string(index) + "]"};
        }
    }
    return {m_default, "seccomp.default_action"};
}

Result<std::shared_ptr<const CompiledFilter>> compile(const policy::Policy& p, const CompileOptions& opt) {
    using Kind = policy::Action::Kind;
    auto out = std::make_shared<CompiledFilter>();
    out->m_sha = p.sha256;
    out->m_default = p.seccomp.default_action;

    // Everything the filter does not allow outright is sent to the supervisor.
    Ctx ctx(seccomp_init(SCMP_ACT_NOTIFY));
    if (!ctx) return fail("seccomp_init: out of memory");
    // Syscalls from another ABI (i386 via int $0x80; x32 numbers are folded into
    // this by libseccomp's x86_64 handling) go to the supervisor too, which
    // denies them whatever the policy says and records the attempt.
    if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_NOTIFY); rc < 0)
        return fail_sys("seccomp_attr_set(ACT_BADARCH, NOTIFY)", -rc);
    // We set no_new_privs ourselves, before Landlock; libseccomp must not load anything.
    seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0);
    // Binary-tree ordering keeps the per-syscall cost flat for large allowlists.
    seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2);

    const bool clone_allowed = p.seccomp.allowed.count("clone") > 0;
    std::set<int> watch;
    for (const auto& name : opt.watch) {
        int nr = seccomp_syscall_resolve_name_arch(SCMP_ARCH_X86_64, name.c_str());
        if (nr < 0) continue;
        watch.insert(nr);
        out->m_watched[nr] = false;
    }
    for (const auto& name : p.seccomp.allowed) {
        int nr = seccomp_syscall_resolve_name_arch(SCMP_ARCH_X86_64, name.c_str());
        if (nr == __NR_SCMP_ERROR) return fail("seccomp: unknown syscall \"" + name + "\"");
        if (nr < 0) continue;  // pseudo-syscall on this arch
        if (name == "execve" || name == "execveat") {
            continue;  // always notified: the supervisor records every exec
        }
        if (name == "clone3" || name == "clone") continue;  // handled below
        if (watch.count(nr)) {
            out->m_watched[nr] = true;  // notified; decide() allows it
            continue;
        }
        if (int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, nr, 0); rc < 0)
            return fail_sys("seccomp_rule_add(allow " + name + ")", -rc);
    }
    // clone3 passes its flags in memory the filter cannot read, so it is never
    // allowed: it goes to the supervisor (the default NOTIFY), which answers
    // ENOSYS so glibc falls back to clone(), whose flags are a register the
    // filter checks. The supervisor records it as a denial only when the flags
    // it can read ask for namespaces (glibc's own attempts are not denials).
    if (clone_allowed) {
        if (int rc = seccomp_rule_add(ctx.get(), SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                                      SCMP_A0(SCMP_CMP_MASKED_EQ, kCloneNamespaceFlags, 0));
            rc < 0)
            return fail_sys("seccomp_rule_add(clone without namespace flags)", -rc);
    }

    size_t index = 0;
    for (const auto& r : p.seccomp.rules) {
        int nr = seccomp_syscall_resolve_name_arch(SCMP_ARCH_X86_64, r.syscall.c_str());
        if (nr < 0) { ++index; continue; }
        if (r.action.kind == Kind::Allow) {
            if (r.syscall == "execve" || r.syscall == "execveat" || r.syscall == "clone3") {
                return fail("seccomp.rule[" + std::to_string(index) + "]: " + r.syscall +
                            " cannot be allowed by an argument rule");
            }
            if (watch.count(nr)) {
                out->m_watched_allow_rules[nr].emplace_back(index, r);
                ++index;
                continue;
            }
            auto conds = conditions(r);
            if (r.syscall == "clone") {
                scmp_arg_cmp ns{};
                ns.arg = 0;
                ns.op = SCMP_CMP_MASKED_EQ;
                ns.datum_a = kCloneNamespaceFlags;
                ns.datum_b = 0;
                conds.push_back(ns);
            }
            int rc = seccomp_rule_add_array(ctx.get(), SCMP_ACT_ALLOW, nr, unsigned(conds.size()), conds.data());
            if (rc < 0)
                return fail_sys("seccomp_rule_add(seccomp.rule[" + std::to_string(index) + "] " + r.syscall + ")", -rc);
        } else {
            // Non-allow rules stay "notify" in the filter; the supervisor applies
            // them (register values only, so the decision is race-free).
            out->m_rules[nr].emplace_back(index, r);
        }
        ++index;
    }
    for (const char* hot : kHot) {
        int nr = seccomp_syscall_resolve_name_arch(SCMP_ARCH_X86_64, hot);
        if (nr >= 0 && p.seccomp.allowed.count(hot)) seccomp_syscall_priority(ctx.get(), nr, 255);
    }

    // libseccomp 2.5 exports only to an fd: use an anonymous memfd.
    UniqueFd mem(memfd_create("moat-bpf", MFD_CLOEXEC));
    if (!mem) return fail_sys("memfd_create(moat-bpf)", errno);
    if (int rc = seccomp_export_bpf(ctx.get(), mem.get()); rc < 0) return fail_sys("seccomp_export_bpf", -rc);
    struct stat st{};
    if (fstat(mem.get(), &st) < 0) return fail_sys("fstat(moat-bpf)", errno);
    if (st.st_size <= 0 || st.st_size % sizeof(sock_filter) != 0 || st.st_size > 4096 * (off_t)sizeof(sock_filter))
        return fail("seccomp_export_bpf: unexpected program size " + std::to_string(st.st_size));
    out->m_program.resize(size_t(st.st_size) / sizeof(sock_filter));
    if (pread(mem.get(), out->m_program.data(), size_t(st.st_size), 0) != st.st_size)
        return fail_sys("pread(moat-bpf)", errno);
    return std::shared_ptr<const CompiledFilter>(std::move(out));
}

Result<std::shared_ptr<const CompiledFilter>> FilterCache::get(const policy::Policy& p, const CompileOptions& opt) {
    std::string key = p.sha256;
    for (const auto& w : opt.watch) {
        key += '\0';
        key += w;
    }
    {
        std::lock_guard lk(m_mu);
        auto it = m_cache.find(key);
        if (it != m_cache.end()) return it->second;
    }
    auto f = compile(p, opt);
    if (!f) return f;
    std::lock_guard lk(m_mu);
    return m_cache.emplace(key, *f).first->second;
}

size_t FilterCache::size() const {
    std::lock_guard lk(m_mu);
    return m_cache.size();
}

}  // namespace moat::compiler
