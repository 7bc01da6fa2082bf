// moatctl policy export --to k8s (docs/policy.md, "Kubernetes"): a Security
// Profiles Operator SeccompProfile in the CRD's own shape
// (no defaultErrnoRet, errnoRet a number as runtimes read it), the Pod snippet, and every loss named.
#include <cerrno>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "moat/policy/k8s.h"
#include "test_util.h"

namespace moat::policy {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

// The value after "KEY: " on its own line (the YAML document's top keys).
json top(const std::string& yaml, const std::string& key) {
    const std::string tag = "\n" + key + ": ";
    const size_t at = yaml.find(tag);
    if (at == std::string::npos) return nullptr;
    const size_t from = at + tag.size();
    return json::parse(yaml.substr(from, yaml.find('\n', from) - from), nullptr, false);
}

TEST(K8sExport, WritesTheCrdShapeAndThePodSnippet) {
    Policy p = test::parse_ok(R"(
name = "Img_Convert.v2"
[limits]
memory = "256MiB"
wall_time = "90s"
[filesystem]
read_only = ["/usr"]
read_write = []
tmpfs = ["/tmp"]
tmpfs_size = "16MiB"
[seccomp]
default_action = "errno:EPERM"
allow = ["@default"]

[[seccomp.rule]]
syscall = "socket"
action = "errno:EACCES"
)",
                              "img.toml");
    K8sExportResult r = export_k8s(p);
    ASSERT_FALSE(r.yaml.empty()) << test::dump(r.diagnostics);
    EXPECT_EQ(k8s_name("Img_Convert.v2"), "img-convert-v2");
    EXPECT_EQ(k8s_name("_x_"), "x");
    EXPECT_EQ(k8s_name("___"), "moat-policy");
    EXPECT_EQ(k8s_name(std::string(64, 'a')), std::string(63, 'a'));
    EXPECT_EQ(k8s_name(std::string(62, 'a') + "_b"), std::string(62, 'a'));

    EXPECT_THAT(r.yaml, HasSubstr("\napiVersion: security-profiles-operator.x-k8s.io/v1beta1\nkind: SeccompProfile\n"));
    json meta = top(r.yaml, "metadata");
    EXPECT_EQ(meta["name"], "img-convert-v2");
    EXPECT_EQ(meta["annotations"]["moat.policy/name"], "Img_Convert.v2");
    EXPECT_EQ(meta["annotations"]["moat.policy/sha256"], p.sha256);
    json spec = top(r.yaml, "spec");
    ASSERT_TRUE(spec.is_object()) << r.yaml;
    EXPECT_EQ(spec["defaultAction"], "SCMP_ACT_ERRNO");
    EXPECT_FALSE(spec.contains("defaultErrnoRet")) << "the CRD has no such field";
    bool saw_socket = false;
    for (const json& e : spec["syscalls"]) {
        // A number: runtimes read the operator's file with errnoRet as uint
        // (a string made every Pod fail to start, operator issue #1769).
        if (e.contains("errnoRet")) {
            EXPECT_TRUE(e["errnoRet"].is_number_unsigned()) << e.dump();
        }
        if (e["names"] == json({"socket"})) {
            saw_socket = true;
            EXPECT_EQ(e["errnoRet"], EACCES);
        }
    }
    EXPECT_TRUE(saw_socket) << spec.dump();

    // The snippet: seccomp profile path, wall time, memory, read-only root.
    EXPECT_THAT(r.yaml, HasSubstr("#         localhostProfile: operator/NAMESPACE/img-convert-v2.json\n"));
    EXPECT_THAT(r.yaml, HasSubstr("#     activeDeadlineSeconds: 90   # limits.wall_time\n"));
    EXPECT_THAT(r.yaml, HasSubstr("#           memory: \"268435456\"   # limits.memory\n"));
    EXPECT_THAT(r.yaml, HasSubstr("#         readOnlyRootFilesystem: true"));
    EXPECT_THAT(r.yaml, HasSubstr("#     - name: tmpfs-0\n#       emptyDir: {medium: Memory, sizeLimit: \"16777216\"}\n"));
    EXPECT_THAT(r.yaml, HasSubstr("#       - {name: tmpfs-0, mountPath: \"/tmp\"}\n"));
    // Every line before the document is a comment (kubectl apply sees one object).
    const std::string head = r.yaml.substr(0, r.yaml.find("\napiVersion:") + 1);
    for (size_t i = 0; i < head.size(); i = head.find('\n', i) + 1) EXPECT_EQ(head[i], '#') << head.substr(i, 60);

    // The losses: printed as warnings and listed in the file.
    for (const char* loss : {"limits.cpu_time", "limits.pids", "network.mode = \"none\"", "denials are not recorded"}) {
        bool warned = false;
        for (const Diagnostic& d : r.diagnostics) warned |= d.message.find(loss) != std::string::npos;
        EXPECT_TRUE(warned) << loss << "\n" << test::dump(r.diagnostics);
        EXPECT_THAT(r.yaml, HasSubstr(std::string("#  - ") + loss));
    }
}

TEST(K8sExport, ADefaultErrnoOtherThanEpermIsALoss) {
    Policy p = test::parse_ok(R"(
name = "enosys"
[seccomp]
default_action = "errno:ENOSYS"
allow = ["@default"]
)");
    K8sExportResult r = export_k8s(p);
    ASSERT_FALSE(r.yaml.empty());
    EXPECT_FALSE(top(r.yaml, "spec").contains("defaultErrnoRet"));
    bool warned = false;
    for (const Diagnostic& d : r.diagnostics)
        warned |= d.message.find("no defaultErrnoRet: calls the policy denies by default fail with EPERM instead of "
                                 "errno 38") != std::string::npos;
    EXPECT_TRUE(warned) << test::dump(r.diagnostics);
}

}  // namespace
}  // namespace moat::policy
