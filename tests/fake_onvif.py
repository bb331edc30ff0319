"""A fake ONVIF camera for the tests: a real HTTP server on loopback speaking SOAP 1.2.

It answers the device, media, PTZ and events (PullPoint) services, checks WS-Security
UsernameToken digests against its own clock, and has faults a test can switch on:
a clock offset, unsupported actions, missing services, a subscription limit, expiry,
a reboot that forgets every subscription, silence (requests never answered), and
digest-only authentication (HTTP Digest, RFC 7616, MD5 with qop=auth, demanded on every
SOAP request; WS-Security alone is then refused with a 401 challenge).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape

import isodate
from aiohttp import web
from lxml import etree

SOAP = "http://www.w3.org/2003/05/soap-envelope"
NAMESPACES = {
    "s": SOAP,
    "tt": "http://www.onvif.org/ver10/schema",
    "tds": "http://www.onvif.org/ver10/device/wsdl",
    "trt": "http://www.onvif.org/ver10/media/wsdl",
    "tptz": "http://www.onvif.org/ver20/ptz/wsdl",
    "tev": "http://www.onvif.org/ver10/events/wsdl",
    "wsnt": "http://docs.oasis-open.org/wsn/b-2",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "tns1": "http://www.onvif.org/ver10/topics",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "wsu": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
    "ter": "http://www.onvif.org/ver10/error",
}
SERVICE_NS = {
    "device": NAMESPACES["tds"],
    "media": NAMESPACES["trt"],
    "ptz": NAMESPACES["tptz"],
    "events": NAMESPACES["tev"],
}
# How far a WS-Security Created time may stray from the camera's clock.
AUTH_WINDOW_S = 30
DIGEST_REALM = "Fakecam ONVIF"
# One parameter of an Authorization: Digest header: name=token or name="quoted string".
DIGEST_PARAMETER = re.compile(r'\s*([A-Za-z][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def digest_parameters(header: str) -> dict[str, str] | None:
    """The parameters of an `Authorization: Digest ...` header, None if it is not one."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    parameters: dict[str, str] = {}
    position = 0
    rest = rest.strip()
    while position < len(rest):
        match = DIGEST_PARAMETER.match(rest, position)
        if match is None or match.end() == position:
            return None
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        parameters[match.group(1).lower()] = value
        position = match.end()
    return parameters


def _duration(text: str, default: float) -> float:
    """Seconds of an xsd:duration such as PT10S or P0D; `default` when there is none."""
    try:
        return float(isodate.parse_duration(text.strip()).total_seconds())
    except (isodate.ISO8601Error, ValueError, AttributeError):
        return default


def _zulu(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Subscription:
    number: int
    expires: datetime
    queue: list[str] = field(default_factory=list)
    renewals: int = 0


class SoapFault(Exception):
    def __init__(self, subcode: str, text: str, status: int = 400) -> None:
        super().__init__(text)
        self.subcode = subcode
        self.status = status


class FakeCamera:
    """The camera. Attributes are its faults and its memory; tests read and set them."""

    def __init__(self, username: str = "admin", password: str = "secret") -> None:
        self.username = username
        self.password = password
        self.clock_offset = timedelta(0)
        self.services = {"device", "media", "ptz", "events"}
        self.unsupported: set[str] = set()
        self.max_subscriptions = 4
        self.silent = False
        self.stream_uri = "rtsp://127.0.0.1:8554/stream"
        self.subscriptions: dict[int, Subscription] = {}
        self.created = 0
        self.unsubscribed = 0
        self.calls: list[str] = []
        self.pull_timeouts: list[str] = []
        self.ptz_calls: list[tuple[str, dict[str, str]]] = []
        self.presets: dict[str, str] = {"1": "gate"}
        self.initial_motion = "false"
        self.digest_only = False
        # Nonces handed out in challenges, each with the nonce counts already used.
        self.nonces: dict[str, set[str]] = {}
        self.opaque = secrets.token_hex(8)
        self.digest_refusals = 0
        self.digest_accepted = 0
        self.port = 0
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None

    # -- what tests do

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/onvif/{service}", self._handle)
        app.router.add_post("/onvif/subscription/{number}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        self._released.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.clock_offset

    def reboot(self) -> None:
        """Forget every subscription and Digest nonce, as a restarted camera does."""
        self.subscriptions.clear()
        self.nonces.clear()

    def push(
        self,
        topic: str,
        item: str,
        value: str,
        operation: str = "Changed",
        utc: datetime | None = None,
    ) -> None:
        """Queue a notification for every live subscription."""
        message = self._notification(topic, item, value, operation, utc or self.now())
        for subscription in self.subscriptions.values():
            subscription.queue.append(message)

    # -- the server

    async def _handle(self, request: web.Request) -> web.Response:
        if self.silent:
            await self._released.wait()
        body = await request.read()
        if self.digest_only and not self._digest_valid(request):
            self.digest_refusals += 1
            return self._challenge()
        try:
            envelope = etree.fromstring(body)
            payload = envelope.find(f"{{{SOAP}}}Body")
            if payload is None or len(payload) == 0:
                raise SoapFault("ter:InvalidArgVal", "no SOAP body")
            operation = etree.QName(payload[0]).localname
            self.calls.append(operation)
            # A digest-only camera has already checked the caller; it ignores WS-Security.
            if operation != "GetSystemDateAndTime" and not self.digest_only:
                self._authorise(envelope)
            if operation in self.unsupported:
                raise SoapFault("ter:ActionNotSupported", f"{operation} not supported")
            answer = await self._answer(request, operation, payload[0])
        except SoapFault as fault:
            return self._fault(fault)
        return web.Response(
            body=self._envelope(answer), content_type="application/soap+xml", charset="utf-8"
        )

    def _authorise(self, envelope: Any) -> None:
        token = envelope.find(".//wsse:UsernameToken", NAMESPACES)
        if token is None:
            raise SoapFault("ter:NotAuthorized", "sender not authorized")
        username = token.findtext("wsse:Username", "", NAMESPACES)
        password = token.findtext("wsse:Password", "", NAMESPACES)
        nonce = base64.b64decode(token.findtext("wsse:Nonce", "", NAMESPACES))
        created = token.findtext("wsu:Created", "", NAMESPACES)
        expected = base64.b64encode(
            hashlib.sha1(nonce + created.encode() + self.password.encode()).digest()
        ).decode()
        if username != self.username or password != expected:
            raise SoapFault("ter:NotAuthorized", "sender not authorized")
        moment = datetime.fromisoformat(created.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise SoapFault("ter:NotAuthorized", "Created without a zone")
        if abs((moment - self.now()).total_seconds()) > AUTH_WINDOW_S:
            raise SoapFault("ter:NotAuthorized", "Created time out of window")

    def _digest_valid(self, request: web.Request) -> bool:
        """Whether the request carries a Digest answer to one of this camera's nonces."""
        header = request.headers.get("Authorization", "")
        given = digest_parameters(header)
        if given is None:
            return False
        nonce = given.get("nonce", "")
        used = self.nonces.get(nonce)
        if (
            used is None
            or given.get("username") != self.username
            or given.get("realm") != DIGEST_REALM
            or given.get("uri") != request.path_qs
            or given.get("qop") != "auth"
            or given.get("algorithm", "MD5").upper() != "MD5"
            or given.get("opaque", self.opaque) != self.opaque
        ):
            return False
        count, cnonce = given.get("nc", ""), given.get("cnonce", "")
        if not re.fullmatch(r"[0-9a-fA-F]{8}", count) or not cnonce or count in used:
            return False  # a replayed or malformed nonce count
        secret = _md5(f"{self.username}:{DIGEST_REALM}:{self.password}")
        method = _md5(f"{request.method}:{request.path_qs}")
        expected = _md5(f"{secret}:{nonce}:{count}:{cnonce}:auth:{method}")
        if not secrets.compare_digest(expected, given.get("response", "")):
            return False
        used.add(count)
        self.digest_accepted += 1
        return True

    def _challenge(self) -> web.Response:
        nonce = secrets.token_hex(16)
        self.nonces[nonce] = set()
        challenge = (
            f'Digest realm="{DIGEST_REALM}", qop="auth", algorithm=MD5, '
            f'nonce="{nonce}", opaque="{self.opaque}"'
        )
        return web.Response(
            status=401,
            text="401 Unauthorized",
            headers={"WWW-Authenticate": challenge},
        )

    def _base(self) -> str:
        return f"http://127.0.0.1:{self.port}/onvif"

    async def _answer(self, request: web.Request, operation: str, element: Any) -> str:
        service = request.match_info.get("service")
        handler = getattr(self, f"_op_{operation}", None)
        needs = {
            "device_service": "device",
            "media": "media",
            "ptz": "ptz",
            "events": "events",
        }.get(service or "", "events")
        if handler is None or needs not in self.services:
            raise SoapFault("ter:ActionNotSupported", f"{operation} not supported")
        result: str = await handler(request, element)
        return result

    # -- device

    async def _op_GetSystemDateAndTime(self, request: web.Request, element: Any) -> str:
        now = self.now()
        return (
            "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
            "<tt:DateTimeType>Manual</tt:DateTimeType><tt:DaylightSavings>false"
            "</tt:DaylightSavings><tt:UTCDateTime>"
            f"<tt:Time><tt:Hour>{now.hour}</tt:Hour><tt:Minute>{now.minute}</tt:Minute>"
            f"<tt:Second>{now.second}</tt:Second></tt:Time>"
            f"<tt:Date><tt:Year>{now.year}</tt:Year><tt:Month>{now.month}</tt:Month>"
            f"<tt:Day>{now.day}</tt:Day></tt:Date>"
            "</tt:UTCDateTime></tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
        )

    async def _op_GetServices(self, request: web.Request, element: Any) -> str:
        paths = {"device": "device_service", "media": "media", "ptz": "ptz", "events": "events"}
        services = "".join(
            f"<tds:Service><tds:Namespace>{SERVICE_NS[name]}</tds:Namespace>"
            f"<tds:XAddr>{self._base()}/{paths[name]}</tds:XAddr>"
            "<tds:Version><tt:Major>2</tt:Major><tt:Minor>40</tt:Minor></tds:Version>"
            "</tds:Service>"
            for name in sorted(self.services)
        )
        return f"<tds:GetServicesResponse>{services}</tds:GetServicesResponse>"

    async def _op_GetDeviceInformation(self, request: web.Request, element: Any) -> str:
        return (
            "<tds:GetDeviceInformationResponse><tds:Manufacturer>Fakecam</tds:Manufacturer>"
            "<tds:Model>PTZ-1</tds:Model><tds:FirmwareVersion>1.0.0</tds:FirmwareVersion>"
            "<tds:SerialNumber>FC0001</tds:SerialNumber><tds:HardwareId>1</tds:HardwareId>"
            "</tds:GetDeviceInformationResponse>"
        )

    # -- media

    async def _op_GetProfiles(self, request: web.Request, element: Any) -> str:
        return (
            "<trt:GetProfilesResponse>"
            '<trt:Profiles token="main" fixed="true"><tt:Name>Main</tt:Name></trt:Profiles>'
            '<trt:Profiles token="sub" fixed="true"><tt:Name>Sub</tt:Name></trt:Profiles>'
            "</trt:GetProfilesResponse>"
        )

    async def _op_GetStreamUri(self, request: web.Request, element: Any) -> str:
        return (
            "<trt:GetStreamUriResponse><trt:MediaUri>"
            f"<tt:Uri>{escape(self.stream_uri)}</tt:Uri>"
            "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
            "<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout>"
            "</trt:MediaUri></trt:GetStreamUriResponse>"
        )

    async def _op_GetSnapshotUri(self, request: web.Request, element: Any) -> str:
        return (
            "<trt:GetSnapshotUriResponse><trt:MediaUri>"
            f"<tt:Uri>{self._base()}/snapshot.jpg</tt:Uri>"
            "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
            "<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout>"
            "</trt:MediaUri></trt:GetSnapshotUriResponse>"
        )

    # -- PTZ

    def _record_ptz(self, operation: str, element: Any) -> None:
        values: dict[str, str] = {}
        for node in element.iter():
            name = etree.QName(node).localname
            if node.text and node.text.strip():
                values[name] = node.text.strip()
            for key, value in node.attrib.items():
                values[f"{name}.{key}"] = value
        self.ptz_calls.append((operation, values))

    async def _ptz_ok(self, operation: str, element: Any) -> str:
        self._record_ptz(operation, element)
        return f"<tptz:{operation}Response/>"

    async def _op_ContinuousMove(self, request: web.Request, element: Any) -> str:
        return await self._ptz_ok("ContinuousMove", element)

    async def _op_RelativeMove(self, request: web.Request, element: Any) -> str:
        return await self._ptz_ok("RelativeMove", element)

    async def _op_AbsoluteMove(self, request: web.Request, element: Any) -> str:
        return await self._ptz_ok("AbsoluteMove", element)

    async def _op_Stop(self, request: web.Request, element: Any) -> str:
        return await self._ptz_ok("Stop", element)

    async def _op_GotoHomePosition(self, request: web.Request, element: Any) -> str:
        return await self._ptz_ok("GotoHomePosition", element)

    async def _op_GotoPreset(self, request: web.Request, element: Any) -> str:
        token = element.findtext("tptz:PresetToken", "", NAMESPACES)
        if token not in self.presets:
            raise SoapFault("ter:NoToken", f"no preset {token}")
        return await self._ptz_ok("GotoPreset", element)

    async def _op_SetPreset(self, request: web.Request, element: Any) -> str:
        self._record_ptz("SetPreset", element)
        token = element.findtext("tptz:PresetToken", "", NAMESPACES) or str(len(self.presets) + 1)
        self.presets[token] = element.findtext("tptz:PresetName", "", NAMESPACES)
        return (
            f"<tptz:SetPresetResponse><tptz:PresetToken>{escape(token)}</tptz:PresetToken>"
            "</tptz:SetPresetResponse>"
        )

    async def _op_GetPresets(self, request: web.Request, element: Any) -> str:
        presets = "".join(
            f'<tptz:Preset token="{escape(token)}"><tt:Name>{escape(name)}</tt:Name></tptz:Preset>'
            for token, name in sorted(self.presets.items())
        )
        return f"<tptz:GetPresetsResponse>{presets}</tptz:GetPresetsResponse>"

    # -- events

    async def _op_CreatePullPointSubscription(self, request: web.Request, element: Any) -> str:
        self._expire()
        if len(self.subscriptions) >= self.max_subscriptions:
            raise SoapFault("ter:MaxPullPoints", "too many subscriptions", status=400)
        lifetime = _duration(element.findtext("tev:InitialTerminationTime", "", NAMESPACES), 60)
        self.created += 1
        now = self.now()
        subscription = Subscription(self.created, now + timedelta(seconds=lifetime))
        subscription.queue.append(
            self._notification(
                "tns1:RuleEngine/CellMotionDetector/Motion",
                "IsMotion",
                self.initial_motion,
                "Initialized",
                now,
            )
        )
        self.subscriptions[subscription.number] = subscription
        address = f"{self._base()}/subscription/{subscription.number}"
        return (
            "<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference>"
            f"<wsa:Address>{address}</wsa:Address></tev:SubscriptionReference>"
            f"<wsnt:CurrentTime>{_zulu(now)}</wsnt:CurrentTime>"
            f"<wsnt:TerminationTime>{_zulu(subscription.expires)}</wsnt:TerminationTime>"
            "</tev:CreatePullPointSubscriptionResponse>"
        )

    def _subscription(self, request: web.Request) -> Subscription:
        self._expire()
        number = request.match_info.get("number")
        subscription = self.subscriptions.get(int(number)) if number else None
        if subscription is None:
            raise SoapFault("wsnt:ResourceUnknownFault", "no such subscription")
        return subscription

    def _expire(self) -> None:
        now = self.now()
        for number, subscription in list(self.subscriptions.items()):
            if subscription.expires <= now:
                del self.subscriptions[number]

    async def _op_PullMessages(self, request: web.Request, element: Any) -> str:
        subscription = self._subscription(request)
        self.pull_timeouts.append(element.findtext("tev:Timeout", "", NAMESPACES))
        timeout = _duration(self.pull_timeouts[-1], 5)
        limit = int(element.findtext("tev:MessageLimit", "10", NAMESPACES) or 10)
        deadline = asyncio.get_running_loop().time() + timeout
        while not subscription.queue and asyncio.get_running_loop().time() < deadline:
            if subscription.number not in self.subscriptions:
                raise SoapFault("wsnt:ResourceUnknownFault", "subscription ended")
            await asyncio.sleep(0.05)
        messages, subscription.queue[:] = subscription.queue[:limit], subscription.queue[limit:]
        now = self.now()
        return (
            f"<tev:PullMessagesResponse><tev:CurrentTime>{_zulu(now)}</tev:CurrentTime>"
            f"<tev:TerminationTime>{_zulu(subscription.expires)}</tev:TerminationTime>"
            f"{''.join(messages)}</tev:PullMessagesResponse>"
        )

    async def _op_Renew(self, request: web.Request, element: Any) -> str:
        subscription = self._subscription(request)
        lifetime = _duration(element.findtext("wsnt:TerminationTime", "", NAMESPACES), 60)
        now = self.now()
        subscription.expires = now + timedelta(seconds=lifetime)
        subscription.renewals += 1
        return (
            f"<wsnt:RenewResponse><wsnt:TerminationTime>{_zulu(subscription.expires)}"
            f"</wsnt:TerminationTime><wsnt:CurrentTime>{_zulu(now)}</wsnt:CurrentTime>"
            "</wsnt:RenewResponse>"
        )

    async def _op_Unsubscribe(self, request: web.Request, element: Any) -> str:
        subscription = self._subscription(request)
        del self.subscriptions[subscription.number]
        self.unsubscribed += 1
        return "<wsnt:UnsubscribeResponse/>"

    async def _op_SetSynchronizationPoint(self, request: web.Request, element: Any) -> str:
        self._subscription(request)
        return "<tev:SetSynchronizationPointResponse/>"

    # -- XML

    @staticmethod
    def _notification(topic: str, item: str, value: str, operation: str, utc: datetime) -> str:
        return (
            "<wsnt:NotificationMessage>"
            '<wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">'
            f"{escape(topic)}</wsnt:Topic><wsnt:Message>"
            f'<tt:Message UtcTime="{_zulu(utc)}" PropertyOperation="{operation}">'
            '<tt:Source><tt:SimpleItem Name="VideoSourceConfigurationToken" Value="vsc"/>'
            f'</tt:Source><tt:Data><tt:SimpleItem Name="{item}" Value="{value}"/></tt:Data>'
            "</tt:Message></wsnt:Message></wsnt:NotificationMessage>"
        )

    @staticmethod
    def _envelope(body: str) -> str:
        declarations = " ".join(f'xmlns:{k}="{v}"' for k, v in NAMESPACES.items())
        return (
            f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope {declarations}>'
            f"<s:Body>{body}</s:Body></s:Envelope>"
        )

    def _fault(self, fault: SoapFault) -> web.Response:
        body = (
            "<s:Fault><s:Code><s:Value>s:Sender</s:Value><s:Subcode>"
            f"<s:Value>{fault.subcode}</s:Value></s:Subcode></s:Code>"
            f'<s:Reason><s:Text xml:lang="en">{escape(str(fault))}</s:Text></s:Reason>'
            "</s:Fault>"
        )
        return web.Response(
            body=self._envelope(body),
            status=fault.status,
            content_type="application/soap+xml",
            charset="utf-8",
        )
