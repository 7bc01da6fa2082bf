#include "moat/ipc/incident_copy.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "moat/common/fd.h"
#include "moat/ipc/client.h"

namespace moat::ipc {

namespace {

Result<IncidentCopy> through_moatd(const std::string& socket, const std::string& db, const std::string& dest) {
    auto c = Client::connect(socket);
    if (!c) return std::unexpected(c.error().wrap("asking moatd for the copy"));
    UniqueFd out(::open(dest.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!out) return std::unexpected(Error::sys("creating " + dest, errno));
    auto r = c->send({{"op", "backup"}}, {out.get()});
    auto a = r ? c->receive() : Result<nlohmann::json>(std::unexpected(r.error()));
    if (!a || !a->value("ok", false)) {
        ::unlink(dest.c_str());
        return std::unexpected(a ? Error::msg("moatd refused the copy: " + a->value("error", std::string("?")))
                                 : a.error().wrap("asking moatd for the copy"));
    }
    IncidentCopy ic;
    ic.source = db;
    ic.by_moatd = true;
    ic.info.bytes = a->value("bytes", uint64_t(0));
    ic.info.jobs = a->value("jobs", int64_t(0));
    ic.info.events = a->value("events", int64_t(0));
    ic.info.policies = a->value("policies", int64_t(0));
    return ic;
}

}  // namespace

Result<IncidentCopy> make_incident_copy(const std::string& socket, std::string db, const std::string& dest) {
    if (db.empty() && !socket.empty()) {
        if (auto c = Client::connect(socket)) {
            if (auto r = c->call({{"op", "hello"}}); r && r->contains("database") && (*r)["database"].is_string())
                db = (*r)["database"].get<std::string>();
        }
    }
    if (db.empty()) db = kDefaultDatabase;
    if (::access(db.c_str(), R_OK) != 0 && errno == EACCES && !socket.empty()) return through_moatd(socket, db, dest);
    auto info = store::backup_database(db, dest);
    if (!info) return std::unexpected(info.error());
    return IncidentCopy{*info, db, false};
}

}  // namespace moat::ipc
