#include "backend/backend.h"

namespace moat::ui {

QString Backend::errorText(const nlohmann::json& reply) {
    if (!reply.is_object()) return QStringLiteral("malformed answer");
    std::string code = reply.value("code", std::string("error"));
    std::string msg = reply.value("error", std::string("unknown error"));
    return QString::fromStdString(code + ": " + msg);
}

}  // namespace moat::ui
