<#
.SYNOPSIS
  Installs the Withforce MES station gateway of one station as a Windows service with WinSW 2.12.

.DESCRIPTION
  Run as Administrator on the station PC, after Python 3.11+ and the station install:
    py -3.11 -m venv "C:\Program Files\WithforceMES\venv"
    & "C:\Program Files\WithforceMES\venv\Scripts\pip.exe" install "withforce-mes[station]"
  and with WinSW-x64.exe (https://github.com/winsw/winsw/releases, v2.12.0) downloaded beside this script.
  It fills mes-gateway.xml (beside this script) with the station's values, writes it and a renamed copy of
  WinSW to C:\ProgramData\WithforceMES\service, lets only Administrators, SYSTEM and the service read the XML
  (it holds the broker password), gives the service account Modify on the work and log directories only,
  then installs and starts the service. Run it again to change settings: the service is stopped, rewritten
  and started again. Not run on the machine where it was written (Linux): see docs/ops/deploy.md.

.EXAMPLE
  .\install-gateway.ps1 -Station st03 -MqttHost mes.factory.lan -MqttPassword (Read-Host -AsSecureString) `
      -CaFile C:\ProgramData\WithforceMES\ca.crt -ApiBaseUrl https://mes.factory.lan -FirmwareToken $token
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [ValidatePattern('^[A-Za-z0-9_-]{1,32}$')] [string] $Station,
    [Parameter(Mandatory)] [string] $MqttHost,
    [Parameter(Mandatory)] [securestring] $MqttPassword,
    [string] $MqttUsername = $Station,
    [int] $MqttPort = 0,                       # 0: 8883 with a CA file (TLS), else 1883
    [string] $CaFile = '',                     # the site CA's certificate: TLS with host name check
    [string] $Site = 'KR',
    [string] $Line = 'L1',
    [string] $WorkDir = 'C:\neurohub_work',
    [string] $ApiBaseUrl = '',                 # firmware downloads (PROC-004 station)
    [string] $FirmwareToken = '',
    [int] $MetricsPort = 9465,                 # 0: no /metrics
    [string] $InstallDir = 'C:\Program Files\WithforceMES\venv',
    [string] $ServiceDir = 'C:\ProgramData\WithforceMES\service',
    [string] $LogDir = 'C:\ProgramData\WithforceMES\logs',
    [string] $WinSW = (Join-Path $PSScriptRoot 'WinSW-x64.exe')
)
$ErrorActionPreference = 'Stop'

$mes = Join-Path $InstallDir 'Scripts\mes.exe'
if (-not (Test-Path $mes)) { throw "mes.exe not found at ${mes}: install withforce-mes[station] into $InstallDir first" }
if (-not (Test-Path $WinSW)) { throw "WinSW not found at ${WinSW}: download WinSW-x64.exe v2.12.0 beside this script" }
if ($CaFile -and -not (Test-Path $CaFile)) { throw "CA certificate not found: $CaFile" }

$id = "mes-gateway-$Station"
$exe = Join-Path $ServiceDir "$id.exe"
$xmlPath = Join-Path $ServiceDir "$id.xml"
$account = 'NT AUTHORITY\LocalService'

# -- the service definition: the template's XML, its values replaced through the DOM (no text splicing)
[xml] $doc = Get-Content -Raw -Encoding UTF8 (Join-Path $PSScriptRoot 'mes-gateway.xml')
$svc = $doc.service
$svc.id = $id
$svc.name = "Withforce MES gateway $Station"
$svc.executable = $mes
$svc.arguments = "gateway --station $Station"
$svc.workingdirectory = $WorkDir
$svc.logpath = $LogDir
$plain = [Runtime.InteropServices.Marshal]::PtrToStringBSTR([Runtime.InteropServices.Marshal]::SecureStringToBSTR($MqttPassword))
$values = [ordered]@{
    MES_GW_STATION = $Station; MES_GW_SITE = $Site; MES_GW_LINE = $Line; MES_GW_WORK_DIR = $WorkDir
    MES_GW_MQTT_HOST = $MqttHost; MES_GW_MQTT_USERNAME = $MqttUsername; MES_GW_MQTT_PASSWORD = $plain
    MES_GW_MQTT_PORT = $(if ($MqttPort) { "$MqttPort" } else { '' })
    MES_GW_MQTT_TLS_CA_FILE = $CaFile; MES_GW_API_BASE_URL = $ApiBaseUrl; MES_GW_FIRMWARE_TOKEN = $FirmwareToken
    MES_GW_METRICS_PORT = $(if ($MetricsPort) { "$MetricsPort" } else { '' })
}
foreach ($entry in @($svc.env)) {
    if ($values.Contains($entry.name)) {
        # An empty value means "not set": the gateway's default applies (e.g. no TLS, no firmware downloads).
        if ($values[$entry.name] -eq '') { [void] $svc.RemoveChild($entry) } else { $entry.value = $values[$entry.name] }
    }
}
if (-not $MetricsPort) { $svc.env | Where-Object name -eq 'MES_GW_METRICS_HOST' | ForEach-Object { [void] $svc.RemoveChild($_) } }

# -- directories and rights: the service account writes the work and log directories, nothing else
foreach ($dir in @($ServiceDir, $LogDir, $WorkDir)) { New-Item -ItemType Directory -Force -Path $dir | Out-Null }
foreach ($dir in @($WorkDir, $LogDir)) {
    & icacls.exe $dir /grant "${account}:(OI)(CI)M" | Out-Null
    if ($LASTEXITCODE) { throw "icacls failed on $dir" }
}

$existing = Get-Service -Name $id -ErrorAction SilentlyContinue
if ($existing) { & $exe stop | Out-Null; & $exe uninstall | Out-Null }

Copy-Item -Force $WinSW $exe
$doc.Save($xmlPath)
# The XML holds the broker password: Administrators and SYSTEM full, the service account read, nobody else.
& icacls.exe $xmlPath /inheritance:r /grant:r 'BUILTIN\Administrators:F' 'NT AUTHORITY\SYSTEM:F' "${account}:R" | Out-Null
if ($LASTEXITCODE) { throw "icacls failed on $xmlPath" }

& $exe install
if ($LASTEXITCODE) { throw "WinSW install failed ($LASTEXITCODE)" }
& $exe start
if ($LASTEXITCODE) { throw "WinSW start failed ($LASTEXITCODE)" }
Write-Host "service $id installed and started; status: mes gateway status --station $Station; logs: $LogDir"
