#include "dicom_io/header_scan.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <vector>

namespace triage::dicom_io {
namespace {

constexpr size_t kReadLimit = 256 * 1024;
constexpr uint32_t kUndefined = 0xFFFFFFFF;

struct Element {
    uint16_t group = 0, elem = 0;
    char vr[2] = {0, 0};
    uint32_t length = 0;
    size_t value = 0;  // offset of the value
};

class Reader {
public:
    Reader(const std::vector<uint8_t>& buf, size_t pos) : m_b(buf), m_pos(pos) {}

    bool next(bool explicit_vr, Element& e) {
        if (!have(8)) return false;
        e.group = u16(m_pos);
        e.elem = u16(m_pos + 2);
        if (e.group == 0xFFFE || !explicit_vr) {  // items/delimiters are always implicit
            e.vr[0] = e.vr[1] = 0;
            e.length = u32(m_pos + 4);
            m_pos += 8;
        } else {
            e.vr[0] = static_cast<char>(m_b[m_pos + 4]);
            e.vr[1] = static_cast<char>(m_b[m_pos + 5]);
            if (long_form(e.vr)) {
                if (!have(12)) return false;
                e.length = u32(m_pos + 8);
                m_pos += 12;
            } else {
                e.length = u16(m_pos + 6);
                m_pos += 8;
            }
        }
        e.value = m_pos;
        return true;
    }

    /// Skips a value: defined length, or an undefined-length sequence/encapsulated value.
    bool skip(bool explicit_vr, const Element& e, int depth = 0) {
        if (e.length != kUndefined) {
            if (!have(e.length)) return false;
            m_pos += e.length;
            return true;
        }
        if (depth > 16) return false;
        for (;;) {  // items until the sequence delimiter
            Element item;
            if (!next(explicit_vr, item) || item.group != 0xFFFE) return false;
            if (item.elem == 0xE0DD) return true;
            if (item.elem != 0xE000) return false;
            if (item.length != kUndefined) {
                if (!have(item.length)) return false;
                m_pos += item.length;
                continue;
            }
            for (;;) {  // elements until the item delimiter
                Element inner;
                if (!next(explicit_vr, inner)) return false;
                if (inner.group == 0xFFFE && inner.elem == 0xE00D) break;
                if (!skip(explicit_vr, inner, depth + 1)) return false;
            }
        }
    }

    /// The value as text, each backslash-separated value trimmed of padding (as DCMTK does).
    std::string text(const Element& e) const {
        std::string raw(reinterpret_cast<const char*>(&m_b[e.value]), e.length), out;
        size_t from = 0;
        for (;;) {
            size_t to = raw.find('\\', from);
            std::string v = raw.substr(from, to == std::string::npos ? std::string::npos : to - from);
            while (!v.empty() && (v.back() == ' ' || v.back() == '\0')) v.pop_back();
            size_t start = v.find_first_not_of(' ');
            out += start == std::string::npos ? std::string() : v.substr(start);
            if (to == std::string::npos) return out;
            out += '\\';
            from = to + 1;
        }
    }
    uint16_t u16(size_t at) const { return static_cast<uint16_t>(m_b[at] | (m_b[at + 1] << 8)); }
    uint32_t u32(size_t at) const { return u16(at) | (static_cast<uint32_t>(u16(at + 2)) << 16); }
    bool have(size_t n) const { return m_pos + n <= m_b.size() && m_pos + n >= m_pos; }
    size_t pos() const { return m_pos; }

private:
    static bool long_form(const char* vr) {
        static const char* kLong[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"};
        for (const char* l : kLong)
            if (vr[0] == l[0] && vr[1] == l[1]) return true;
        return false;
    }
    const std::vector<uint8_t>& m_b;
    size_t m_pos;
};

std::string* target(InstanceMeta& m, uint16_t g, uint16_t e) {
    switch ((static_cast<uint32_t>(g) << 16) | e) {
        case 0x00080016: return &m.sop_class_uid;
        case 0x00080018: return &m.sop_instance_uid;
        case 0x00080020: return &m.study_date;
        case 0x00080030: return &m.study_time;
        case 0x00080050: return &m.accession;
        case 0x00080060: return &m.modality;
        case 0x0008103E: return &m.series_description;
        case 0x00081030: return &m.study_description;
        case 0x00321060: return &m.procedure_description;
        case 0x00080008: return &m.image_type;
        case 0x00100020: return &m.patient_id;
        case 0x00180015: return &m.body_part;
        case 0x0020000D: return &m.study_uid;
        case 0x0020000E: return &m.series_uid;
        case 0x00200011: return &m.series_number;
        case 0x00200013: return &m.instance_number;
        case 0x00200052: return &m.frame_of_reference_uid;
        default: return nullptr;
    }
}

}  // namespace

std::optional<InstanceMeta> scan_header(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    std::vector<uint8_t> buf(kReadLimit);
    ssize_t n = ::pread(fd, buf.data(), buf.size(), 0);
    off_t file_size = ::lseek(fd, 0, SEEK_END);
    ::close(fd);
    if (n < 132 + 12 || std::memcmp(&buf[128], "DICM", 4) != 0) return std::nullopt;
    buf.resize(static_cast<size_t>(n));
    bool whole_file = static_cast<size_t>(n) < kReadLimit;

    InstanceMeta m;
    Reader r(buf, 132);
    Element e;
    size_t meta_end = 0;
    while (r.next(true, e) && e.group == 0x0002) {  // meta header: Explicit VR LE
        if (e.length == kUndefined || !r.have(e.length)) return std::nullopt;
        if (e.elem == 0x0010) m.transfer_syntax_uid = r.text(e);
        Element copy = e;
        r.skip(true, copy);
        meta_end = r.pos();
    }
    const std::string& ts = m.transfer_syntax_uid;
    bool implicit = ts == "1.2.840.10008.1.2";
    bool explicit_le = ts == "1.2.840.10008.1.2.1" || ts.rfind("1.2.840.10008.1.2.4.", 0) == 0 ||
                       ts == "1.2.840.10008.1.2.5";
    if (meta_end == 0 || (!implicit && !explicit_le)) return std::nullopt;

    Reader d(buf, meta_end);
    bool reached_end = false;
    for (;;) {
        if (!d.have(8)) {
            reached_end = whole_file && d.pos() == buf.size();
            break;
        }
        if (!d.next(!implicit, e)) return std::nullopt;
        if (e.group == 0xFFFE) return std::nullopt;
        if (e.group == 0x7FE0) {  // pixel data: everything needed was before it
            // A truncated or encapsulated value is left to DCMTK, which checks it properly.
            if (e.length == kUndefined || e.value + e.length > static_cast<uint64_t>(file_size))
                return std::nullopt;
            if (m.frames == 0) m.frames = 1;
            reached_end = true;
            break;
        }
        if (e.length != kUndefined && !d.have(e.length)) return std::nullopt;
        if (std::string* t = target(m, e.group, e.elem); t && e.length != kUndefined) {
            *t = d.text(e);
        } else if (e.group == 0x0028 && (e.elem == 0x0010 || e.elem == 0x0011) && e.length == 2) {
            (e.elem == 0x0010 ? m.rows : m.columns) = d.u16(e.value);
        } else if (e.group == 0x0028 && e.elem == 0x0008 && e.length != kUndefined) {
            m.frames = std::atoi(d.text(e).c_str());
        }
        if (!d.skip(!implicit, e)) return std::nullopt;
    }
    if (!reached_end) return std::nullopt;
    return m;
}

}  // namespace triage::dicom_io
