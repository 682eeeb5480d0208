#include "core/segment_map.h"

#include <cstring>
#include <fstream>

namespace triage::core {

namespace {
constexpr char kMagic[8] = {'T', 'R', 'S', 'E', 'G', 'R', 'L', '1'};
}

Status write_segment_map(const std::string& path, const SegmentMap& map) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) return make_error(ErrorKind::Transient, "cannot write " + path);
    out.write(kMagic, sizeof kMagic);
    std::int32_t dims[3] = {map.columns, map.rows, map.slices};
    out.write(reinterpret_cast<const char*>(dims), sizeof dims);
    for (size_t i = 0; i < map.values.size();) {
        std::uint8_t v = map.values[i];
        std::uint32_t run = 1;
        while (i + run < map.values.size() && map.values[i + run] == v && run < 0xFFFFFFFFu) ++run;
        out.put(static_cast<char>(v));
        out.write(reinterpret_cast<const char*>(&run), sizeof run);
        i += run;
    }
    out.flush();
    if (!out) return make_error(ErrorKind::Transient, "writing " + path + " failed");
    return {};
}

Result<SegmentMap> read_segment_map(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    char magic[8];
    std::int32_t dims[3];
    if (!in.read(magic, sizeof magic) || std::memcmp(magic, kMagic, sizeof kMagic) != 0 ||
        !in.read(reinterpret_cast<char*>(dims), sizeof dims) || dims[0] <= 0 || dims[1] <= 0 || dims[2] <= 0)
        return make_error(ErrorKind::InvalidInput, "not a segment map: " + path);
    SegmentMap m{dims[0], dims[1], dims[2], {}};
    const size_t total = static_cast<size_t>(dims[0]) * dims[1] * dims[2];
    m.values.reserve(total);
    char v;
    std::uint32_t run;
    while (m.values.size() < total && in.get(v) && in.read(reinterpret_cast<char*>(&run), sizeof run)) {
        if (m.values.size() + run > total) break;
        m.values.insert(m.values.end(), run, static_cast<std::uint8_t>(v));
    }
    if (m.values.size() != total) return make_error(ErrorKind::InvalidInput, "truncated segment map: " + path);
    return m;
}

}  // namespace triage::core
