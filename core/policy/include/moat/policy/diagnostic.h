#pragma once
#include <string>
#include <vector>

namespace moat::policy {

struct Diagnostic {
    enum class Severity { Error, Warning, Note };
    std::string file;
    int line = 0;    // 1-based, 0 = whole file
    int column = 0;  // 1-based
    Severity severity = Severity::Error;
    std::string message;
    // "FILE:LINE:COL: error: message"
    std::string str() const;
};

bool has_errors(const std::vector<Diagnostic>& d);

}  // namespace moat::policy
