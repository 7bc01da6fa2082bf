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
}  // namespace

std::string sha256_hex(std::string_view data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
    return to_hex(md, len);
}

struct Sha256::Ctx {
    EVP_MD_CTX* c = EVP_MD_CTX_new();
    ~Ctx() { EVP_MD_CTX_free(c); }
};

Sha256::Sha256() : m_ctx(std::make_unique<Ctx>()) { EVP_DigestInit_ex(m_ctx->c, EVP_sha256(), nullptr); }
Sha256::~Sha256() = default;
void Sha256::update(std::string_view data) { EVP_DigestUpdate(m_ctx->c, data.data(), data.size()); }
std::string Sha256::hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(m_ctx->c, md, &len);
    return to_hex(md, len);
}

}  // namespace moat
