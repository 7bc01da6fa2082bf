#include "moat/common/sha256.h"

#include <openssl/evp.h>

namespace moat {
namespace {
std::string to_hex(const unsigned char* md, unsigned len) {
    static const char* hex = "0123456789abcdef";
    std::string out;
    out.reserve(len * 2);
    for (unsigned i = 0; i < len; ++i) {
        out += hex[md[i] >> 4];
        out += hex[md[i] & 15];
    }
    return out;
}

// OpenSSL 3 looks EVP_sha256() up in its provider tables on every digest
// init (an implicit fetch: a locked hash lookup and string copies, ~40 us
// per call on the test VM, once per job start for the policy key). The
// fetched method is immutable and safe to share between threads, so it is
// fetched once and kept for the process's life.
const EVP_MD* sha256_md() {
    static const EVP_MD* md = [] {
        const EVP_MD* f = EVP_MD_fetch(nullptr, "SHA256", nullptr);
        return f ? f : EVP_sha256();
    }();
    return md;
}
}  // namespace

std::string sha256_hex(std::string_view data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(data.data(), data.size(), md, &len, sha256_md(), nullptr);
    return to_hex(md, len);
}

struct Sha256::Ctx {
    EVP_MD_CTX* c = EVP_MD_CTX_new();
    ~Ctx() { EVP_MD_CTX_free(c); }
};

Sha256::Sha256() : m_ctx(std::make_unique<Ctx>()) { EVP_DigestInit_ex(m_ctx->c, sha256_md(), nullptr); }
Sha256::~Sha256() = default;
void Sha256::update(std::string_view data) { EVP_DigestUpdate(m_ctx->c, data.data(), data.size()); }
std::string Sha256::hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(m_ctx->c, md, &len);
    return to_hex(md, len);
}

}  // namespace moat
