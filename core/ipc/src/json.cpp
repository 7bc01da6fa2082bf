#include "moat/ipc/json.h"

#include "moat/common/timeutil.h"

namespace moat::ipc {

nlohmann::json job_to_json(const store::JobRecord& j) {
    using nlohmann::json;
    json o;
    o["id"] = j.id;
    o["tier"] = j.tier;
    o["argv"] = j.argv;
    o["policy"] = {{"name", j.policy_name}, {"version", j.policy_version}, {"sha256", j.policy_sha256},
                   {"id", j.policy_id}};
    o["started_at"] = rfc3339_utc(j.started_ns);
    o["ended_at"] = j.ended_ns ? json(rfc3339_utc(*j.ended_ns)) : json(nullptr);
    o["state"] = j.state;
    o["exit_code"] = j.exit_code ? json(*j.exit_code) : json(nullptr);
    o["signal"] = j.signal ? json(*j.signal) : json(nullptr);
    o["termination"] = j.state == "finished" ? json{{"cause", j.cause}, {"detail", j.detail}}
                                             : json{{"cause", nullptr}, {"detail", nullptr}};
    o["resources"] = {{"cpu_time_ns", j.resources.cpu_time_ns},
                      {"peak_memory_bytes", j.resources.peak_memory_bytes},
                      {"peak_pids", j.resources.peak_pids}};
    o["denial_count"] = j.denial_count;
    o["uid"] = j.uid;
    o["pid"] = j.pid;
    o["cwd"] = j.cwd;
    o["env"] = j.env;
    o["accelerator"] = j.accelerator.empty() ? json(nullptr) : json(j.accelerator);
    o["sandbox"] = j.info;
    o["replay_of"] = j.replay_of ? json(j.replay_of) : json(nullptr);
    o["learn"] = j.learn;
    o["recording"] = j.recording;
    return o;
}

}  // namespace moat::ipc
