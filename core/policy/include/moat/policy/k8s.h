#pragma once
// `moatctl policy export --to k8s` (docs/policy.md, "Kubernetes"): a policy as
// a Security Profiles Operator SeccompProfile, for clusters that run their
// own runtime, with the Pod securityContext/resources that go with it.
#include <string>
#include <vector>

#include "moat/policy/diagnostic.h"
#include "moat/policy/policy.h"

namespace moat::policy {

struct K8sExportResult {
    // One YAML document (kubectl apply -f): the SeccompProfile, preceded by a
    // comment block with the Pod snippet and every loss. Empty on an error.
    std::string yaml;
    std::vector<Diagnostic> diagnostics;  // warnings: what Kubernetes cannot express
};

// The SeccompProfile's name: the policy name lowercased, '_' and '.' as '-',
// leading and trailing '-' dropped, at most 63 characters (an RFC 1123
// label; policy names are [A-Za-z0-9._-]{1,64}); "moat-policy" if nothing is
// left. Names that differ only there ("a.b", "a_b") map to the same label.
std::string k8s_name(const std::string& policy_name);

K8sExportResult export_k8s(const Policy& p);

}  // namespace moat::policy
