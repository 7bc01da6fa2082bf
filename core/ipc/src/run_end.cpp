#include "moat/ipc/run_end.h"

#include "moat/common/text.h"

namespace moat::ipc {

using nlohmann::json;

std::string lines_for_terminal(std::string_view text) {
    std::string out;
    size_t start = 0;
    for (;;) {
        size_t nl = text.find('\n', start);
        out += moat::for_terminal(text.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start));
        if (nl == std::string_view::npos) return out;
        out += '\n';
        start = nl + 1;
    }
}

std::string field_for_terminal(const json& j, const char* key, const char* dflt) {
    if (!j.is_object()) return dflt;
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return dflt;
    if (it->is_string()) return moat::for_terminal(it->get_ref<const std::string&>());
    return moat::for_terminal(it->dump(-1, ' ', false, json::error_handler_t::replace));
}

RunEnd describe_run_error(std::string_view error) {
    return {kRunSetupFailed, "moatctl: " + lines_for_terminal(error) + "\n"};
}

RunEnd describe_run_end(int64_t job, const json& j) {
    if (!j.is_object() || !j.contains("termination") || !j["termination"].is_object())
        return describe_run_error("moatd sent a malformed job record");
    const json& term = j["termination"];
    const std::string cause = field_for_terminal(term, "cause");
    const std::string detail = field_for_terminal(term, "detail");
    RunEnd end;
    if (cause == "setup-failed") {
        end.text = "moatctl: job " + std::to_string(job) + " could not be set up: " + detail + "\n";
        end.status = kRunSetupFailed;
        return end;
    }
    // Inputs that were not snapshotted (and why): a replay of the job will
    // refuse them, and the operator should learn that now, not at the replay.
    // Daemons that do not send the recording with `finished` say nothing.
    const json rec = j.value("recording", json::object());
    if (rec.is_object() && rec.value("inputs", json()).is_array()) {
        for (const auto& in : rec["inputs"]) {
            if (!in.is_object() || in.value("sha256", json()).is_string()) continue;
            end.text += "moatctl: warning: job " + std::to_string(job) + ": input " + field_for_terminal(in, "host") +
                        " was not snapshotted, so `moatctl replay " + std::to_string(job) + "` will refuse it: " +
                        field_for_terminal(in, "note") + "\n";
        }
    }
    if (rec.is_object() && rec.contains("output_cut") && rec["output_cut"].is_string())
        end.text += "moatctl: warning: job " + std::to_string(job) + ": not all of its output reached this terminal (" +
                    field_for_terminal(rec, "output_cut") + "); `moatctl output " + std::to_string(job) +
                    "` shows the recorded tail\n";
    if (j.contains("exit_code") && j["exit_code"].is_number_integer()) {
        end.status = j["exit_code"].get<int>();
        return end;
    }
    if (j.contains("signal") && j["signal"].is_number_integer()) {
        if (cause != "exited" && cause != "signaled")
            end.text += "moatctl: job " + std::to_string(job) + " ended: " + cause + ": " + detail + "\n";
        end.status = 128 + j["signal"].get<int>();
        return end;
    }
    // It never ran (e.g. stopped while its inputs were being copied).
    end.text += "moatctl: job " + std::to_string(job) + " ended before it started: " + cause + ": " + detail + "\n";
    end.status = kRunSetupFailed;
    return end;
}

}  // namespace moat::ipc
