#pragma once
#include <memory>
#include <string>
#include <string_view>

namespace moat {
// Lower-case hex SHA-256 (OpenSSL's libcrypto).
std::string sha256_hex(std::string_view data);

// The same, fed in pieces (files and streams that are not held in memory).
class Sha256 final {
public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;
    void update(std::string_view data);
    std::string hex();  // finishes; the object is spent afterwards

private:
    struct Ctx;
    std::unique_ptr<Ctx> m_ctx;
};
}  // namespace moat
