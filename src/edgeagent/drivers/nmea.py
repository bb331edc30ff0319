"""NMEA 0183 framing and epoch assembly, free of I/O so tests can feed it any bytes."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import reduce
from operator import xor
from typing import Any

import pynmea2

from edgeagent import BUILD_DATE

MAX_SENTENCE = 256
KNOT_MPS = 1852.0 / 3600.0
# Below this speed a receiver's course over ground is noise from its own jitter.
HEADING_MIN_SPEED_MPS = 0.5
# The GPS week number is 10 bits wide in the legacy message, so old firmware reports a
# date 1024 weeks too early once its design window has passed.
WEEK_ROLLOVER = timedelta(weeks=1024)
# The earliest date this build can see live: a receiver date before it is a rollover.
RELEASE_DATE = date.fromisoformat(BUILD_DATE)
MAX_EPOCH_ADDRESSES = 64
MAX_EPOCH_SATELLITES = 256

_CR, _LF, _DOLLAR, _BANG, _HASH, _TAB = 0x0D, 0x0A, 0x24, 0x21, 0x23, 0x09
_HEX = frozenset(b"0123456789abcdefABCDEF")

_HUNT, _COMMENT, _SENTENCE, _SKIP = range(4)
# A sentence's body: printable ASCII except the start characters `$` and `!`.
_BODY = re.compile(rb"[\x20\x22\x23\x25-\x7e]+")
_COMMENT_BODY = re.compile(rb"[\x20-\x7e\t]+")
_STOP = re.compile(rb"[$!\r\n]")


def _printable(byte: int) -> bool:
    return 0x20 <= byte <= 0x7E


class NmeaFramer:
    """Cuts a raw byte stream into checksum-verified sentences; never raises.

    Receivers interleave binary protocols, drop bytes and glue sentences, so the
    framer resynchronises on every `$`/`!` and counts each discarded piece in `drops`.
    """

    def __init__(
        self, max_length: int = MAX_SENTENCE, *, allow_missing_checksum: bool = False
    ) -> None:
        self.drops: Counter[str] = Counter()
        self._max = max_length
        # Some timing receivers (HP 58534A) never send checksums; only a device configured
        # so may pass such sentences, and only whole lines, never fragments cut by binary.
        self._allow_bare = allow_missing_checksum
        self._state = _HUNT
        self._line_start = True
        self._junk = False
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[str]:
        out: list[str] = []
        i, size = 0, len(data)
        # Runs of bytes that cannot change the state are taken whole by a regex; only
        # the bytes that may (start characters, line ends, binary) go through _step.
        while i < size:
            state = self._state
            if state == _SENTENCE:
                match = _BODY.match(data, i)
                if match:
                    end = match.end()
                    if len(self._buf) + end - i > self._max:
                        self.drops["too_long"] += 1
                        self._buf.clear()
                        self._state = _SKIP
                    else:
                        self._buf += data[i:end]
                    i = end
                    continue
            elif state == _COMMENT:
                match = _COMMENT_BODY.match(data, i)
                if match:
                    i = match.end()
                    continue
            elif state == _SKIP or not (self._line_start and data[i] == _HASH and not self._junk):
                match = _STOP.search(data, i)
                end = match.start() if match else size
                if end > i:
                    if state == _HUNT:
                        self._junk = True
                        self._line_start = False
                    i = end
                    continue
            self._step(data[i], out)
            i += 1
        return out

    def _step(self, byte: int, out: list[str]) -> None:
        state = self._state
        if state == _SENTENCE:
            if _printable(byte) and byte not in (_DOLLAR, _BANG):
                if len(self._buf) >= self._max:
                    self.drops["too_long"] += 1
                    self._buf.clear()
                    self._state = _SKIP
                else:
                    self._buf.append(byte)
                return
            line_end = byte in (_CR, _LF)
            self._finish(out, line_end)
            if byte in (_DOLLAR, _BANG):
                self._start(byte)
            elif line_end:
                self._to_hunt(line_start=True)
            else:
                # Binary right after a sentence: the rest of that frame is one junk piece.
                self._to_hunt(line_start=False)
                self._junk = True
            return
        if state == _SKIP:
            if byte in (_CR, _LF):
                self._to_hunt(line_start=True)
            elif byte in (_DOLLAR, _BANG):
                self._start(byte)
            return
        if state == _COMMENT:
            if byte in (_CR, _LF):
                self._to_hunt(line_start=True)
            elif not (_printable(byte) or byte == _TAB):
                # A real comment is text; binary here means we misread a frame as one.
                self._to_hunt(line_start=False)
                self._junk = True
            return
        if byte in (_DOLLAR, _BANG):
            self._end_junk()
            self._start(byte)
        elif byte in (_CR, _LF):
            self._end_junk()
            self._line_start = True
        elif self._line_start and byte == _HASH and not self._junk:
            self._state = _COMMENT
        else:
            self._junk = True
            self._line_start = False

    def _start(self, byte: int) -> None:
        self._buf.clear()
        self._buf.append(byte)
        self._state = _SENTENCE

    def _to_hunt(self, *, line_start: bool) -> None:
        self._buf.clear()
        self._state = _HUNT
        self._line_start = line_start
        self._junk = False

    def _end_junk(self) -> None:
        if self._junk:
            self.drops["garbage"] += 1
            self._junk = False

    def _finish(self, out: list[str], line_end: bool) -> None:
        raw = bytes(self._buf)
        self._buf.clear()
        if len(raw) <= 1:
            # A doubled `$$` loses nothing; a lone start char before a line end is junk.
            if line_end:
                self.drops["garbage"] += 1
            return
        star = raw.rfind(b"*")
        tail = raw[star + 1 :].rstrip(b" ") if star >= 0 else b""
        if star < 0 and line_end and self._allow_bare:
            out.append(raw.decode("ascii"))
            return
        if star < 0 or not tail:
            # Cut off by the next sentence or by binary: a fragment, not a sentence.
            self.drops["no_checksum" if line_end else "garbage"] += 1
            return
        if len(tail) != 2 or not all(c in _HEX for c in tail):
            self.drops["checksum"] += 1
            return
        if reduce(xor, raw[1:star], 0) != int(tail, 16):
            self.drops["checksum"] += 1
            return
        out.append(raw[: star + 3].decode("ascii"))


@dataclass(frozen=True, slots=True)
class Fix:
    """One valid position solution, stamped with the receiver's own UTC time."""

    time: datetime
    lat: float
    lng: float
    speed_mps: float | None = None
    heading: float | None = None
    altitude: float | None = None
    fix_quality: int | None = None
    satellites: int | None = None
    hdop: float | None = None
    lat_error_m: float | None = None
    lng_error_m: float | None = None
    altitude_error_m: float | None = None


def fix_data(fix: Fix) -> dict[str, Any]:
    """The `location_update` payload with the platform's names; make_event adds `timestamp`."""
    return {
        "lat": round(fix.lat, 9),
        "lng": round(fix.lng, 9),
        "speed": fix.speed_mps,
        "heading": fix.heading,
        "altitude": fix.altitude,
        "fix_quality": fix.fix_quality,
        "satellites": fix.satellites,
        "hdop": fix.hdop,
        "lat_error_m": fix.lat_error_m,
        "lng_error_m": fix.lng_error_m,
        "altitude_error_m": fix.altitude_error_m,
    }


# --- field conversions: pynmea2 only splits fields; every conversion here is ours ---

_TIME_RE = re.compile(r"^(\d{2})(\d{2})(\d{2})(?:\.(\d{1,6}))?$")
_COORD_RE = re.compile(r"^(\d{3,5})(?:\.(\d+))?$")
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
_ADDRESS_RE = re.compile(r"^[A-Z][A-Z0-9]{4}$")
_PROPRIETARY_RE = re.compile(r"^P[A-Z0-9]{2,}$")
_USED = frozenset({"GGA", "RMC", "VTG", "GSA", "GLL", "GNS", "ZDA", "GST", "HDT"})
_UNTIMED = frozenset({"VTG", "GSA", "HDT"})
_KNOWN_TYPES = _USED | frozenset({"GSV", "GBS", "TXT", "DTM", "GRS", "RMB"})
# A receiver sends these once per epoch per talker, so a repeat starts the next epoch
# even when the time field is empty (cold start) and cannot tell epochs apart.
_ONCE = frozenset({"GGA", "RMC", "VTG", "GLL", "GNS", "ZDA", "GST"})
# GNS/RMC mode letters ranked like GGA's quality, for receivers that send no GGA.
_MODE_QUALITY = {"A": 1, "D": 2, "P": 3, "R": 4, "F": 5, "E": 6, "M": 7, "S": 8}


def _time_of_day(text: str) -> int | None:
    """hhmmss[.fff] as microseconds since midnight; None when empty or malformed."""
    match = _TIME_RE.match(text)
    if not match:
        return None
    hours, minutes, seconds = (int(g) for g in match.group(1, 2, 3))
    if hours > 23 or minutes > 59 or seconds > 60:
        return None
    fraction = int((match.group(4) or "").ljust(6, "0"))
    if seconds == 60:
        # A leap second has no place in a datetime: squeeze it into the last millisecond
        # of second 59, so it stays after :59 and before the next minute's :00.
        seconds, fraction = 59, 999_000 + fraction // 1000
    return ((hours * 60 + minutes) * 60 + seconds) * 1_000_000 + fraction


def _coordinate(text: str, hemi: str, positive: str, negative: str, limit: int) -> float | None:
    match = _COORD_RE.match(text)
    if not match or hemi not in (positive, negative):
        return None
    whole = match.group(1)
    degrees = int(whole[:-2])
    minutes = float(whole[-2:] + "." + (match.group(2) or "0"))
    # Placeholders such as 8960.0000 (MTK cold start) fail here: minutes never reach 60.
    if minutes >= 60.0 or degrees > limit:
        return None
    value = degrees + minutes / 60.0
    if value > limit:
        return None
    return -value if hemi == negative else value


def _float(text: str) -> float | None:
    return float(text) if _NUMBER_RE.match(text) else None


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _field(fields: list[str], index: int) -> str:
    return fields[index].strip() if index < len(fields) else ""


def _rmc_date(text: str) -> date | None:
    if len(text) != 6 or not text.isdigit():
        return None
    # Two-digit years: GPS time starts in 1980, so 80-99 are 19xx (old logs, unset
    # clocks and rolled-over weeks, which the date floor then corrects).
    year = int(text[4:6])
    try:
        return date(year + (1900 if year >= 80 else 2000), int(text[2:4]), int(text[0:2]))
    except ValueError:
        return None


@dataclass
class _Epoch:
    """What one measurement epoch has told us so far."""

    tod: int | None = None
    addresses: set[str] = field(default_factory=set)
    type_counts: Counter[str] = field(default_factory=Counter)
    last_marker: tuple[str, int] | None = None
    emitted: bool = False
    date: date | None = None
    valid: bool = False
    invalid: str | None = None
    bad_coordinates: bool = False
    positions: dict[str, tuple[float, float]] = field(default_factory=dict)
    rmc_speed: float | None = None
    vtg_speed: float | None = None
    rmc_heading: float | None = None
    vtg_heading: float | None = None
    altitude: float | None = None
    quality: int | None = None
    mode_quality: int | None = None
    satellites: int | None = None
    gns_satellites: int | None = None
    gsa_satellites: set[str] = field(default_factory=set)
    hdop: float | None = None
    gsa_hdop: float | None = None
    true_heading: float | None = None
    errors: tuple[float | None, float | None, float | None] | None = None

    def vote(self, ok: bool | None, reason: str) -> None:
        if ok is None:
            return
        if ok:
            self.valid = True
        elif self.invalid is None:
            self.invalid = reason


class EpochAssembler:
    """Merges the sentences of one receiver epoch into at most one valid `Fix`.

    Epochs are told apart by sentence order only (a new UTC time of day, or a repeat of
    a once-per-epoch sentence), so replays faster than real time group the same way.
    """

    def __init__(
        self,
        drops: Counter[str] | None = None,
        *,
        date_floor: date | None = None,
        fixed_date: date | None = None,
        host_now: Callable[[], datetime] | None = None,
        heading_min_speed: float = HEADING_MIN_SPEED_MPS,
    ) -> None:
        """`date_floor` corrects week rollovers; without it dates are taken as sent.

        Receivers that never send a date (GGA only) get one from `fixed_date` (the day a
        log was recorded) or from `host_now`, the day that puts the fix nearest the host's
        clock; otherwise they give no fix at all.
        """
        self.drops: Counter[str] = drops if drops is not None else Counter()
        self._floor = date_floor
        self._fixed_date = fixed_date
        self._host_now = host_now
        self._heading_min_speed = heading_min_speed
        self._take: dict[str, Callable[[_Epoch, list[str]], None]] = {
            kind: getattr(self, f"_take_{kind.lower()}") for kind in _USED
        }
        self.no_fix_reason: str | None = "no data yet"
        self.epochs = 0
        self._epoch = _Epoch()
        self._end_marker: tuple[str, int] | None = None
        self._prev_marker: tuple[str, int] | None = None
        self._last_dt: datetime | None = None
        self._last_emitted: datetime | None = None

    def feed(self, sentence: str) -> list[Fix]:
        try:
            return self._feed(sentence)
        except Exception:  # one malformed sentence must never stop the stream
            self.drops["parse"] += 1
            return []

    def flush(self) -> list[Fix]:
        """Emit the pending epoch (the stream went quiet, so nothing more will join it)."""
        fix = self._complete(self._epoch)
        return [fix] if fix else []

    def _feed(self, sentence: str) -> list[Fix]:
        body = sentence[1:].split("*", 1)[0]
        address, _, rest = body.partition(",")
        if sentence.startswith("!"):
            return []
        # Quectel's QZSS talker PQ looks proprietary; a standard type after it says not.
        if _PROPRIETARY_RE.match(address) and not (
            len(address) == 5 and address[2:] in _KNOWN_TYPES
        ):
            return []
        if not _ADDRESS_RE.match(address):
            self.drops["parse"] += 1
            return []
        kind = address[2:]
        if kind not in _USED:
            return []
        try:
            # The framer has checked the checksum; pynmea2 gets a neutral talker (it
            # takes a leading P for proprietary) and no checksum, and only splits fields.
            message = pynmea2.parse(f"$GP{kind},{rest}")
        except Exception:  # pynmea2 raises several exception types on bad input
            self.drops["parse"] += 1
            return []
        fields: list[str] = message.data
        tod = None if kind in _UNTIMED else self._sentence_time(kind, fields)

        out: list[Fix] = []
        epoch = self._epoch
        starts_new = (
            (tod is not None and epoch.tod is not None and tod != epoch.tod)
            or (kind in _ONCE and address in epoch.addresses)
            # No receiver has this many talkers: a stream that never repeats must still
            # close its epochs, so memory stays bounded whatever arrives.
            or len(epoch.addresses) >= MAX_EPOCH_ADDRESSES
        )
        if starts_new:
            fix = self._complete(epoch)
            if fix:
                out.append(fix)
            self._learn(epoch.last_marker)
            epoch = self._epoch = _Epoch()
        if epoch.tod is None and tod is not None:
            epoch.tod = tod
        epoch.addresses.add(address)
        epoch.type_counts[kind] += 1
        epoch.last_marker = (kind, epoch.type_counts[kind])
        self._take[kind](epoch, fields)
        if self._end_marker is not None and epoch.last_marker == self._end_marker:
            fix = self._complete(epoch)
            if fix:
                out.append(fix)
        return out

    @staticmethod
    def _sentence_time(kind: str, fields: list[str]) -> int | None:
        index = 4 if kind == "GLL" else 0
        return _time_of_day(_field(fields, index))

    def _learn(self, marker: tuple[str, int] | None) -> None:
        # The cycle counts as learnt once two epochs in a row end on the same sentence.
        if marker is not None and marker == self._prev_marker:
            self._end_marker = marker
        elif marker != self._end_marker:
            self._end_marker = None
        self._prev_marker = marker

    # --- per-sentence extraction ---

    @staticmethod
    def _position(epoch: _Epoch, kind: str, fields: list[str], first: int) -> None:
        lat_text, lng_text = _field(fields, first), _field(fields, first + 2)
        if not lat_text and not lng_text:
            return
        lat = _coordinate(lat_text, _field(fields, first + 1), "N", "S", 90)
        lng = _coordinate(lng_text, _field(fields, first + 3), "E", "W", 180)
        if lat is None or lng is None or (lat == 0.0 and lng == 0.0):
            epoch.bad_coordinates = True
            return
        epoch.positions.setdefault(kind, (lat, lng))

    @staticmethod
    def _mode_vote(epoch: _Epoch, mode: str, kind: str) -> None:
        if not mode:
            return
        usable = [m for m in mode if m != "N"]
        epoch.vote(bool(usable), f"{kind} mode indicator N")
        if usable and epoch.mode_quality is None:
            epoch.mode_quality = max(_MODE_QUALITY.get(m, 1) for m in usable)

    def _take_gga(self, epoch: _Epoch, fields: list[str]) -> None:
        quality = _int(_field(fields, 5))
        satellites = _int(_field(fields, 6))
        if quality is not None and quality > 0 and satellites == 0:
            # A fix from no satellites contradicts itself (Furuno GT-88 in DGPS mode):
            # this GGA neither confirms nor denies; RMC or GLL in the epoch decide.
            satellites = None
        else:
            epoch.vote(None if quality is None else quality > 0, "GGA fix quality 0")
        if quality is None or quality == 0:
            # A q0 GGA may carry real-looking coordinates (MTK); never use them.
            return
        self._position(epoch, "GGA", fields, 1)
        if epoch.quality is None:
            epoch.quality = quality
        if epoch.satellites is None:
            epoch.satellites = satellites
        if epoch.hdop is None:
            epoch.hdop = _float(_field(fields, 7))
        if epoch.altitude is None:
            epoch.altitude = _float(_field(fields, 8))

    def _take_rmc(self, epoch: _Epoch, fields: list[str]) -> None:
        status = _field(fields, 1)
        # Field 12 (NMEA 4.10 navigational status) is about safety use, not validity.
        epoch.vote({"A": True, "V": False}.get(status), "RMC status V")
        self._mode_vote(epoch, _field(fields, 11), "RMC")
        if status == "A":
            self._position(epoch, "RMC", fields, 2)
        knots = _float(_field(fields, 6))
        if knots is not None and epoch.rmc_speed is None:
            epoch.rmc_speed = knots * KNOT_MPS
        if epoch.rmc_heading is None:
            epoch.rmc_heading = _float(_field(fields, 7))
        day = _rmc_date(_field(fields, 8))
        if day is not None and epoch.date is None:
            epoch.date = day

    def _take_vtg(self, epoch: _Epoch, fields: list[str]) -> None:
        if _field(fields, 8) == "N":
            return
        if _field(fields, 1) in ("T", "") and epoch.vtg_heading is None:
            epoch.vtg_heading = _float(_field(fields, 0))
        kmh = _float(_field(fields, 6))
        knots = _float(_field(fields, 4))
        if epoch.vtg_speed is None:
            if kmh is not None:
                epoch.vtg_speed = kmh / 3.6
            elif knots is not None:
                epoch.vtg_speed = knots * KNOT_MPS

    def _take_gsa(self, epoch: _Epoch, fields: list[str]) -> None:
        # One GSA per constellation; a system with no satellites may say "no fix", so
        # GSA never vetoes an epoch. It fills satellites and HDOP when GGA lacks them.
        if len(epoch.gsa_satellites) < MAX_EPOCH_SATELLITES:
            epoch.gsa_satellites.update(s for s in fields[2:14] if s.isdigit())
        if epoch.gsa_hdop is None:
            epoch.gsa_hdop = _float(_field(fields, 15))

    def _take_gll(self, epoch: _Epoch, fields: list[str]) -> None:
        status = _field(fields, 5)
        epoch.vote({"A": True, "V": False}.get(status), "GLL status V")
        self._mode_vote(epoch, _field(fields, 6), "GLL")
        if status == "A":
            self._position(epoch, "GLL", fields, 0)

    def _take_gns(self, epoch: _Epoch, fields: list[str]) -> None:
        mode = _field(fields, 5)
        self._mode_vote(epoch, mode, "GNS")
        if mode and any(m != "N" for m in mode):
            self._position(epoch, "GNS", fields, 1)
            if epoch.gns_satellites is None:
                epoch.gns_satellites = _int(_field(fields, 6))
            if epoch.gsa_hdop is None:
                epoch.gsa_hdop = _float(_field(fields, 7))
            if epoch.altitude is None:
                epoch.altitude = _float(_field(fields, 8))

    def _take_gst(self, epoch: _Epoch, fields: list[str]) -> None:
        # Standard deviations (m) of latitude, longitude and altitude error.
        if epoch.errors is None:
            errors = [_float(_field(fields, i)) for i in (5, 6, 7)]
            epoch.errors = (errors[0], errors[1], errors[2])

    def _take_hdt(self, epoch: _Epoch, fields: list[str]) -> None:
        heading = _float(_field(fields, 0))
        if heading is not None and 0.0 <= heading <= 360.0 and epoch.true_heading is None:
            epoch.true_heading = heading % 360.0

    def _take_zda(self, epoch: _Epoch, fields: list[str]) -> None:
        day, month, year = (_int(_field(fields, i)) for i in (1, 2, 3))
        if day is None or month is None or year is None or year < 1980:
            return
        try:
            epoch.date = date(year, month, day)
        except ValueError:
            return

    # --- completing an epoch ---

    def _complete(self, epoch: _Epoch) -> Fix | None:
        if epoch.emitted:
            return None
        epoch.emitted = True
        if not epoch.addresses:
            return None
        self.epochs += 1
        fix, reason = self._evaluate(epoch)
        self.no_fix_reason = reason
        if fix is None:
            return None
        if fix.time == self._last_emitted:
            return None
        self._last_emitted = fix.time
        self._last_dt = fix.time
        return fix

    def _evaluate(self, epoch: _Epoch) -> tuple[Fix | None, str | None]:
        if epoch.invalid is not None:
            return None, f"no fix: {epoch.invalid}"
        if not epoch.valid:
            return None, "no fix: receiver reports no validity"
        position = next(
            (epoch.positions[k] for k in ("GGA", "GNS", "RMC", "GLL") if k in epoch.positions),
            None,
        )
        if position is None:
            reason = "invalid coordinates" if epoch.bad_coordinates else "no position"
            return None, f"no fix: {reason}"
        if epoch.tod is None:
            return None, "no fix: no UTC time"
        moment = self._timestamp(epoch.date, epoch.tod)
        if moment is None:
            return None, "no fix: no UTC date yet"
        satellites = next(
            (n for n in (epoch.satellites, epoch.gns_satellites) if n),
            len(epoch.gsa_satellites) or None,
        )
        speed = epoch.rmc_speed if epoch.rmc_speed is not None else epoch.vtg_speed
        errors = epoch.errors or (None, None, None)
        fix = Fix(
            time=moment,
            lat=position[0],
            lng=position[1],
            speed_mps=speed,
            heading=self._heading(epoch, speed),
            altitude=epoch.altitude,
            fix_quality=epoch.quality if epoch.quality is not None else epoch.mode_quality,
            satellites=satellites,
            hdop=epoch.hdop if epoch.hdop is not None else epoch.gsa_hdop,
            lat_error_m=errors[0],
            lng_error_m=errors[1],
            altitude_error_m=errors[2],
        )
        return fix, None

    def _heading(self, epoch: _Epoch, speed: float | None) -> float | None:
        # HDT is the antenna pair's or compass's true heading, good even when standing.
        if epoch.true_heading is not None:
            return epoch.true_heading
        course = epoch.rmc_heading if epoch.rmc_heading is not None else epoch.vtg_heading
        if course is None or not 0.0 <= course <= 360.0:
            return None
        if speed is not None and speed < self._heading_min_speed:
            return None
        return course % 360.0

    def _timestamp(self, day: date | None, tod: int) -> datetime | None:
        offset = timedelta(microseconds=tod)
        if day is not None:
            day = self._unroll(day)
            return datetime(day.year, day.month, day.day, tzinfo=UTC) + offset
        if self._host_now is not None:
            # The host's day, but the one that puts this time of day nearest its clock:
            # at 00:00:01 host time a fix stamped 23:59:59 belongs to yesterday.
            now = self._host_now().astimezone(UTC)
            moment = datetime(now.year, now.month, now.day, tzinfo=UTC) + offset
            if moment - now > timedelta(hours=12):
                moment -= timedelta(days=1)
            elif now - moment > timedelta(hours=12):
                moment += timedelta(days=1)
            return moment
        if self._last_dt is None:
            if self._fixed_date is None:
                return None
            day = self._fixed_date
            return datetime(day.year, day.month, day.day, tzinfo=UTC) + offset
        last = self._last_dt
        moment = datetime(last.year, last.month, last.day, tzinfo=UTC) + offset
        # Without a date of its own the epoch sits next to the last fix: across midnight
        # the time of day wraps, so a large jump back means the next day and vice versa.
        if moment < last - timedelta(hours=12):
            moment += timedelta(days=1)
        elif moment > last + timedelta(hours=12):
            moment -= timedelta(days=1)
        return moment

    def _unroll(self, day: date) -> date:
        """A receiver's date moved past the week-number rollovers that the floor reveals."""
        if self._floor is None:
            return day
        while day < self._floor:
            day += WEEK_ROLLOVER
        return day
