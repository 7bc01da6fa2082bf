#include "models/denial_stats.h"

#include <algorithm>

namespace moat::ui {

void DenialStats::clear() {
    m_perSecond.clear();
    m_bySyscall.clear();
    m_total = 0;
}

void DenialStats::add(const EventRow& e) {
    if (e.kind != "denial") return;
    const std::string sc = e.syscall.empty() ? std::string("?") : e.syscall;
    m_perSecond[e.timeNs / 1'000'000'000][sc] += e.count;
    m_bySyscall[sc] += e.count;
    m_total += e.count;
}

std::vector<std::pair<std::string, uint64_t>> DenialStats::top(size_t n) const {
    std::vector<std::pair<std::string, uint64_t>> v(m_bySyscall.begin(), m_bySyscall.end());
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
        return a.second != b.second ? a.second > b.second : a.first < b.first;
    });
    if (v.size() > n) v.resize(n);
    return v;
}

}  // namespace moat::ui
