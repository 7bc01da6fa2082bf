#include "moat/policy/diagnostic.h"

namespace moat::policy {

std::string Diagnostic::str() const {
    std::string s = file;
    if (line > 0) {
        s += ':' + std::to_string(line);
        if (column > 0) s += ':' + std::to_string(column);
    }
    switch (severity) {
        case Severity::Error: s += ": error: "; break;
        case Severity::Warning: s += ": warning: "; break;
        case Severity::Note: s += ": note: "; break;
    }
    s += message;
    return s;
}

bool has_errors(const std::vector<Diagnostic>& d) {
    for (const Diagnostic& x : d)
        if (x.severity == Diagnostic::Severity::Error) return true;
    return false;
}

}  // namespace moat::policy
