// Lint: findings about a policy that is valid but dangerous (warnings) or that
// cannot work (errors). Positions point at the key that caused each finding.
#include "moat/policy/lint.h"

#include <algorithm>
#include <utility>

#include "moat/policy/container_dev.h"
#include "moat/policy/syscalls.h"

namespace moat::policy {

namespace {

struct Risk {
    std::string_view syscall;
    std::string_view reason;
};

// One line each: what the call would let an attacker in the job do.
constexpr Risk kRisks[] = {
    {"ptrace", "can read and rewrite the memory and registers of other processes of the same user"},
    {"process_vm_readv", "reads the memory of other processes of the same user"},
    {"process_vm_writev", "writes the memory of other processes of the same user"},
    {"pidfd_getfd", "steals open file descriptors from other processes"},
    {"kcmp", "compares kernel objects of other processes, leaking kernel pointer ordering"},
    {"bpf", "loads eBPF programs: a large, frequently exploited kernel attack surface"},
    {"perf_event_open", "exposes performance counters: side channels and a history of kernel exploits"},
    {"userfaultfd", "lets the job stall kernel page faults, a standard primitive for exploiting kernel races"},
    {"mount", "changes the mount table; with a user namespace it can hide or replace sandbox paths"},
    {"umount2", "removes mounts, which can uncover paths the sandbox hid"},
    {"pivot_root", "changes the root filesystem of the mount namespace"},
    {"chroot", "changes the root directory; combined with other calls a classic escape"},
    {"open_tree", "new mount API: clones mounts, escaping the mount layout"},
    {"move_mount", "new mount API: moves mounts"},
    {"fsopen", "new mount API: creates filesystem contexts (a large parser attack surface)"},
    {"fsmount", "new mount API: creates mounts"},
    {"fsconfig", "new mount API: configures filesystems (a large parser attack surface)"},
    {"fspick", "new mount API: reconfigures existing mounts"},
    {"mount_setattr", "new mount API: changes mount flags such as read-only"},
    {"unshare", "creates new namespaces; user namespaces unlock kernel code normally reserved for root"},
    {"setns", "joins other namespaces"},
    {"clone3", "its flags are in memory, so a filter cannot stop it creating namespaces as it does for clone; Moat "
               "therefore answers it with ENOSYS whatever the policy says"},
    {"io_uring_setup", "io_uring performs I/O the seccomp filter never sees, and has a long exploit history"},
    {"io_uring_enter", "io_uring performs I/O the seccomp filter never sees, and has a long exploit history"},
    {"io_uring_register", "io_uring performs I/O the seccomp filter never sees, and has a long exploit history"},
    {"keyctl", "the kernel keyring is not namespaced: keys can leak between jobs of the same user"},
    {"add_key", "the kernel keyring is not namespaced: keys can leak between jobs of the same user"},
    {"request_key", "the kernel keyring is not namespaced and can invoke user-space helpers"},
    {"personality", "without an argument rule it can disable ASLR (ADDR_NO_RANDOMIZE) and enable odd ABIs"},
    {"ioctl", "without an argument rule it reaches every driver's ioctl handler, and TIOCSTI can inject input into a terminal"},
    {"kexec_load", "replaces the running kernel"},
    {"kexec_file_load", "replaces the running kernel"},
    {"init_module", "loads kernel code"},
    {"finit_module", "loads kernel code"},
    {"delete_module", "unloads kernel modules"},
    {"open_by_handle_at", "opens files by handle, bypassing path-based confinement (the shocker container escape)"},
    {"name_to_handle_at", "produces file handles for open_by_handle_at, bypassing path-based confinement"},
    {"reboot", "reboots or halts the machine (or the pid namespace)"},
    {"swapon", "enables swap areas, exposing memory of other processes"},
    {"swapoff", "disables swap areas"},
    {"acct", "switches process accounting to a file of the job's choosing"},
    {"iopl", "raises the I/O privilege level: direct access to hardware ports"},
    {"ioperm", "grants direct access to hardware I/O ports"},
    {"modify_ldt", "edits the local descriptor table, a recurring source of kernel bugs"},
    {"syslog", "reads the kernel log, which leaks kernel addresses"},
    {"lookup_dcookie", "resolves kernel directory cookies to paths"},
    {"quotactl", "manipulates filesystem quotas"},
    {"fanotify_init", "watches filesystem activity system-wide"},
    {"uselib", "obsolete loader of a.out libraries, rarely audited"},
    {"settimeofday", "changes the system clock"},
    {"clock_settime", "changes the system clock"},
    {"clock_adjtime", "changes the system clock"},
    {"adjtimex", "changes the system clock"},
};

Diagnostic at(const Policy& p, SourcePos pos, Diagnostic::Severity sev, std::string msg) {
    return Diagnostic{p.source_name, pos.line, pos.column, sev, std::move(msg)};
}

SourcePos pos_of(const Policy& p, const std::string& key) {
    auto it = p.key_pos.find(key);
    return it == p.key_pos.end() ? SourcePos{} : it->second;
}

// The allow entry that brought `syscall` in: the name itself, else the first
// group containing it; falls back to the allow key itself.
SourcePos allow_entry_pos(const Policy& p, const std::string& syscall) {
    const auto& entries = p.seccomp.allow_entries;
    for (size_t i = 0; i < entries.size(); ++i)
        if (entries[i] == syscall) return pos_of(p, "seccomp.allow[" + std::to_string(i) + "]");
    for (size_t i = 0; i < entries.size(); ++i) {
        if (!entries[i].starts_with('@')) continue;
        std::vector<std::string> members = expand_group(entries[i]);
        if (std::binary_search(members.begin(), members.end(), syscall))
            return pos_of(p, "seccomp.allow[" + std::to_string(i) + "]");
    }
    return pos_of(p, "seccomp.allow");
}

std::string via(const Policy& p, const std::string& syscall) {
    for (const std::string& e : p.seccomp.allow_entries)
        if (e == syscall) return "";
    for (const std::string& e : p.seccomp.allow_entries) {
        if (!e.starts_with('@')) continue;
        std::vector<std::string> members = expand_group(e);
        if (std::binary_search(members.begin(), members.end(), syscall)) return " (via " + e + ")";
    }
    return "";
}

// Allowed at all: unconditionally, or by some rule whose action is allow.
bool can_call(const Policy& p, const std::string& syscall) {
    if (p.seccomp.allowed.contains(syscall)) return true;
    return std::any_of(p.seccomp.rules.begin(), p.seccomp.rules.end(), [&](const SeccompRule& r) {
        return r.syscall == syscall && r.action.kind == Action::Kind::Allow;
    });
}

}  // namespace

std::string risk_of(std::string_view syscall) {
    for (const Risk& r : kRisks)
        if (r.syscall == syscall) return std::string(r.reason);
    return "";
}

std::string clone3_design() {
    return "Moat never lets clone3 run, by design: its flags are in memory, where the filter cannot check them for "
           "namespace flags. It is answered with ENOSYS (and one asking for new namespaces gets default_action and "
           "is recorded as a denial); glibc then falls back to clone, which runs only if allowed and only without "
           "CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWNET or the other namespace flags";
}

std::vector<Diagnostic> lint(const Policy& p) {
    using S = Diagnostic::Severity;
    std::vector<Diagnostic> out;

    // Policies that cannot work at all.
    if (!can_call(p, "execve"))
        out.push_back(at(p, pos_of(p, "seccomp.allow"), S::Error,
                         "execve is not allowed: the job cannot start its program (add \"execve\" or \"@default\" "
                         "to seccomp.allow)"));
    if (!can_call(p, "exit_group"))
        out.push_back(at(p, pos_of(p, "seccomp.allow"), S::Error,
                         "exit_group is not allowed: the job cannot exit normally, every C program ends with it "
                         "(add \"exit_group\" or \"@default\" to seccomp.allow)"));
    if (p.seccomp.default_action.kind == Action::Kind::Log)
        out.push_back(at(p, pos_of(p, "seccomp.default_action"), S::Warning,
                         "seccomp.default_action = \"log\" lets every syscall through and only logs it; use it to "
                         "develop a policy, not to contain a job"));

    // clone3 is never run, whatever the policy says: the filter cannot read its
    // flags (they are in memory), so the supervisor answers ENOSYS and glibc
    // falls back to clone, whose flags the filter does check. Say so where the
    // policy claims otherwise, in the words the compiler and supervisor act on.
    if (p.seccomp.allowed.contains("clone3"))
        out.push_back(at(p, allow_entry_pos(p, "clone3"), S::Warning,
                         "seccomp.allow lists clone3" + via(p, "clone3") + ", but " + clone3_design() +
                             ". Remove clone3 from the list to silence this"));
    for (const SeccompRule& r : p.seccomp.rules)
        if (r.syscall == "clone3" && r.action.kind == Action::Kind::Allow)
            out.push_back(at(p, r.pos, S::Error,
                             "clone3 cannot be allowed by a rule: its flags are in memory, where the filter cannot "
                             "check them, so every clone3 is answered with ENOSYS (glibc falls back to clone)"));

    // Risky syscalls allowed without conditions.
    for (const std::string& name : p.seccomp.allowed) {
        if (name == "clone3") continue;  // above: never allowed in fact
        std::string why = risk_of(name);
        if (why.empty()) continue;
        out.push_back(at(p, allow_entry_pos(p, name), S::Warning,
                         "seccomp.allow lets the job call " + name + via(p, name) + " unconditionally: " + why));
    }
    // A rule that allows a risky call without argument conditions narrows nothing.
    for (const SeccompRule& r : p.seccomp.rules) {
        if (r.action.kind != Action::Kind::Allow || !r.args.empty() || r.syscall == "clone3") continue;
        std::string why = risk_of(r.syscall);
        if (why.empty()) continue;
        out.push_back(at(p, r.pos, S::Warning,
                         "this rule allows " + r.syscall + " with no argument conditions: " + why));
    }

    if (p.network == NetworkMode::Host)
        out.push_back(at(p, pos_of(p, "network.mode"), S::Warning,
                         "network.mode = \"host\" gives the job the host's network: it can reach every service the "
                         "host can, including ones bound to localhost"));
    if (p.tier == Tier::Seccomp && !p.filesystem.tmpfs.empty()) {
        SourcePos pos = pos_of(p, "filesystem.tmpfs");
        std::string how = pos.line ? "" : " (filesystem.tmpfs defaults to [\"/tmp\"]; set tmpfs = [] to silence this)";
        out.push_back(at(p, pos, S::Warning,
                         "tmpfs mounts need a mount namespace; in the seccomp tier these paths are not created" + how));
    }
    // Landlock grants the union of the rules along a path: a read_only entry
    // inside a read_write one would be writable. Never a silent weakening.
    if (p.tier == Tier::Seccomp) {
        for (const NestedReadOnly& n : read_only_inside_read_write(p.filesystem.read_only, p.filesystem.read_write)) {
            SourcePos pos = pos_of(p, "filesystem.read_only[" + std::to_string(n.read_only_index) + "]");
            std::string how;
            if (!pos.line) {  // a default entry: point at the read_write entry that swallows it
                pos = pos_of(p, "filesystem.read_write[" + std::to_string(n.read_write_index) + "]");
                how = " (\"" + n.read_only + "\" is a default read_only entry; set filesystem.read_only explicitly)";
            }
            out.push_back(at(p, pos, S::Error, "in the seccomp tier, " + nested_read_only_message(n) + how));
        }
    }
    // A container or vm job's /dev is its own (container_dev): moatd refuses
    // the job at set-up, so check says so first.
    if (p.tier != Tier::Seccomp) {
        for (auto [key, list, tmpfs] : {std::tuple{"read_only", &p.filesystem.read_only, false},
                                        std::tuple{"read_write", &p.filesystem.read_write, false},
                                        std::tuple{"tmpfs", &p.filesystem.tmpfs, true}})
            for (size_t i = 0; i < list->size(); ++i)
                if (container_dev((*list)[i], tmpfs) == ContainerDev::Refused)
                    out.push_back(at(p, pos_of(p, std::string("filesystem.") + key + "[" + std::to_string(i) + "]"),
                                     S::Error, container_dev_message((*list)[i])));
    }
    for (size_t i = 0; i < p.filesystem.read_write.size(); ++i)
        if (p.filesystem.read_write[i] == "/")
            out.push_back(at(p, pos_of(p, "filesystem.read_write[" + std::to_string(i) + "]"), S::Warning,
                             "filesystem.read_write contains \"/\": the job may write everything its uid can write on "
                             "the host (/tmp, /var/tmp, /dev/shm, world-writable files); list only the directories the "
                             "job must write"));
    if (p.filesystem.landlock == LandlockMode::Off) {
        std::string tier_note = p.tier == Tier::Seccomp
                                    ? ": in the seccomp tier nothing then restricts which files the job can reach"
                                    : ": the seccomp tier would not restrict files (other tiers use mounts)";
        out.push_back(at(p, pos_of(p, "filesystem.landlock"), S::Warning,
                         "filesystem.landlock = \"off\"" + tier_note));
    }

    std::stable_sort(out.begin(), out.end(), [](const Diagnostic& a, const Diagnostic& b) {
        return std::pair(a.line, a.column) < std::pair(b.line, b.column);
    });
    return out;
}

}  // namespace moat::policy
