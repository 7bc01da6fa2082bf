#include "moat/policy/k8s.h"

#include <cctype>

#include <nlohmann/json.hpp>

#include "moat/policy/oci.h"

namespace moat::policy {

std::string k8s_name(const std::string& policy_name) {
    std::string out;
    for (char c : policy_name) {
        const unsigned char u = static_cast<unsigned char>(c);
        out += std::isalnum(u) ? char(std::tolower(u)) : '-';
    }
    // A label: at most 63 characters, starting and ending with an
    // alphanumeric character.
    while (!out.empty() && out.front() == '-') out.erase(out.begin());
    if (out.size() > 63) out.resize(63);
    while (!out.empty() && out.back() == '-') out.pop_back();
    return out.empty() ? std::string("moat-policy") : out;
}

K8sExportResult export_k8s(const Policy& p) {
    K8sExportResult r;
    auto warn = [&](std::string msg) {
        r.diagnostics.push_back({p.source_name, 0, 0, Diagnostic::Severity::Warning, std::move(msg)});
    };
    OciExportResult oci = export_oci(p);
    r.diagnostics = oci.diagnostics;
    if (has_errors(oci.diagnostics) || oci.json.empty()) return r;
    nlohmann::json spec = nlohmann::json::parse(oci.json, nullptr, false);
    if (!spec.is_object()) {
        r.diagnostics.push_back({p.source_name, 0, 0, Diagnostic::Severity::Error, "the OCI export is not a JSON object"});
        return r;
    }
    // The SeccompProfile CRD (v1beta1) is the OCI object without
    // defaultErrnoRet (the runtime's default errno, EPERM, applies). errnoRet
    // stays a number: the operator writes the spec to the node as it is, and
    // runtimes read a number (older operator releases typed it as a string,
    // which made every such Pod fail to start: operator issue #1769).
    if (auto d = spec.find("defaultErrnoRet"); d != spec.end()) {
        if (!(d->is_number_unsigned() && d->get<uint64_t>() == 1))
            warn("the SeccompProfile CRD has no defaultErrnoRet: calls the policy denies by default fail with EPERM "
                 "instead of errno " + d->dump());
        spec.erase(d);
    }
    bool big_values = false;
    if (auto sc = spec.find("syscalls"); sc != spec.end() && sc->is_array())
        for (const auto& e : *sc)
            if (auto args = e.find("args"); args != e.end() && args->is_array())
                for (const auto& a : *args)
                    for (const char* f : {"value", "valueTwo"})
                        if (a.contains(f) && a[f].is_number_unsigned() && a[f].get<uint64_t>() > (1ull << 53))
                            big_values = true;
    if (big_values)
        warn("a rule compares an argument with a value above 2^53; JSON readers that use doubles (kubectl, the API "
             "server) may round it: check the applied object");
    if (!p.filesystem.tmpfs.empty())
        warn("filesystem.tmpfs becomes an emptyDir volume per path in the Pod snippet (medium Memory, sizeLimit = "
             "filesystem.tmpfs_size); add them to the Pod, or a read-only root filesystem leaves those paths "
             "unwritable");
    const std::string name = k8s_name(p.name);
    const Limits& l = p.limits;

    // Losses beyond the seccomp ones export_oci already reported.
    warn("limits.cpu_time has no Pod equivalent (resources.limits.cpu throttles, it does not end the container)");
    warn("limits.pids has no per-Pod field (it is the kubelet's podPidsLimit)");
    warn("limits.file_size, limits.open_files, limits.stack and limits.core have no Pod fields (rlimits come from "
         "the container runtime)");
    if (p.network != NetworkMode::Host && p.network != NetworkMode::Engine)
        warn(std::string("network.mode = \"") + network_mode_name(p.network) +
             "\" needs a NetworkPolicy that denies all egress and ingress; a Pod has the cluster network by default");
    if (!p.filesystem.read_only.empty() || !p.filesystem.read_write.empty())
        warn("filesystem.read_only/read_write name host paths; a Pod sees its image, so they are not exported (mount "
             "volumes for what the job must write)");
    warn("denials are not recorded: the kernel applies the profile's actions itself (SCMP_ACT_LOG entries reach the "
         "audit log only)");

    std::string y;
    y += "# Moat policy \"" + p.name + "\" (sha256 " + p.sha256 + ") for Kubernetes, written by\n";
    y += "# `moatctl policy export --to k8s`. Apply it where the Security Profiles Operator\n";
    y += "# runs: kubectl apply -n NAMESPACE -f this.yaml\n#\n";
    y += "# Then let the Pod use it and the limits that have a Pod field (merge into\n";
    y += "# your Pod spec; NAMESPACE is where the profile was applied):\n#\n";
    y += "#   spec:\n";
    y += "#     activeDeadlineSeconds: " + std::to_string((l.wall_time_ns + 999'999'999) / 1'000'000'000) +
         "   # limits.wall_time\n";
    y += "#     securityContext:\n";
    y += "#       seccompProfile:\n";
    y += "#         type: Localhost\n";
    y += "#         localhostProfile: operator/NAMESPACE/" + name + ".json\n";
    const auto& tmpfs = p.filesystem.tmpfs;
    if (!tmpfs.empty()) {
        y += "#     volumes:   # filesystem.tmpfs\n";
        for (size_t i = 0; i < tmpfs.size(); ++i)
            y += "#     - name: tmpfs-" + std::to_string(i) + "\n#       emptyDir: {medium: Memory, sizeLimit: \"" +
                 std::to_string(p.filesystem.tmpfs_size_bytes) + "\"}\n";
    }
    y += "#     containers:\n";
    y += "#     - name: CONTAINER\n";
    y += "#       securityContext:\n";
    y += "#         allowPrivilegeEscalation: false\n";
    y += "#         runAsNonRoot: true\n";
    y += "#         capabilities:\n";
    y += "#           drop: [\"ALL\"]\n";
    if (p.filesystem.read_write.empty()) y += "#         readOnlyRootFilesystem: true   # filesystem.read_write is empty\n";
    if (!tmpfs.empty()) {
        y += "#       volumeMounts:\n";
        for (size_t i = 0; i < tmpfs.size(); ++i)
            y += "#       - {name: tmpfs-" + std::to_string(i) + ", mountPath: \"" + tmpfs[i] + "\"}\n";
    }
    y += "#       resources:\n";
    y += "#         limits:\n";
    y += "#           memory: \"" + std::to_string(l.memory_bytes) + "\"   # limits.memory\n";
    y += "#         requests:\n";
    y += "#           memory: \"" + std::to_string(l.memory_bytes) + "\"\n";
    y += "#\n# Not expressible in Kubernetes (moatctl printed these as warnings too):\n";
    for (const Diagnostic& d : r.diagnostics)
        if (d.severity == Diagnostic::Severity::Warning) {
            std::string m = d.message;
            for (char& c : m)
                if (c == '\n' || c == '\r') c = ' ';
            y += "#  - " + m + "\n";
        }
    nlohmann::json meta = {{"name", name},
                           {"annotations",
                            {{"moat.policy/name", p.name}, {"moat.policy/sha256", p.sha256}}}};
    // JSON is YAML (1.2): the values are written as JSON flow collections,
    // which kubectl reads like any YAML, with no hand-made YAML quoting.
    y += "apiVersion: security-profiles-operator.x-k8s.io/v1beta1\n";
    y += "kind: SeccompProfile\n";
    y += "metadata: " + meta.dump(-1, ' ', true) + "\n";
    y += "spec: " + spec.dump(-1, ' ', true) + "\n";
    r.yaml = std::move(y);
    return r;
}

}  // namespace moat::policy
