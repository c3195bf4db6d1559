-- Orthanc auto-routing to the xraydenoise DICOM node (`xraydenoise serve`).
--
-- Every DX or CR radiograph that Orthanc stores is sent to the node; the node denoises it and
-- sends the derived instance back to Orthanc, which stores it in a new series of the same study.
-- The derived instances that come back are NOT routed again: otherwise each would be denoised
-- again, its result sent back, routed again, and so on without end.
--
-- Orthanc configuration (tested by tests/e2e/test_serve.py with this exact file):
--
--   "LuaScripts": [ "/etc/orthanc/orthanc-route-to-xraydenoise.lua" ],
--   "DicomModalities": {
--     "xraydenoise": { "AET": "XRAYDENOISE", "Host": "10.0.0.7", "Port": 11112 }
--   }
--
-- and the node sends its results back to Orthanc's own AE title and DICOM port:
--
--   xraydenoise serve --aet XRAYDENOISE --port 11112 --forward ORTHANC@10.0.0.5:4242 --allow ORTHANC ...
--
-- See docs/serve.md ("Routing from a modality or a PACS") for the whole configuration.

-- The node's entry under "DicomModalities", and its AE title (the one its results come from).
local NODE = 'xraydenoise'
local NODE_AET = 'XRAYDENOISE'

-- What is routed: the Modality (0008,0060) of radiographs.
local ROUTED = { DX = true, CR = true }

-- The node writes every derived instance with ImageType DERIVED\... and this prefix in
-- DerivationDescription (0008,2111), followed by the method: "Denoised with xraydenoise network".
local DENOISED_MARK = 'Denoised with xraydenoise'

local function Trim(value)
   return (string.gsub(value or '', '^%s*(.-)%s*$', '%1'))
end

-- True for an instance the node made: marked by the node, or received from the node. The mark
-- also catches a denoised instance that reaches Orthanc another way (an import, another PACS).
local function IsDenoised(tags, origin)
   local derivation = Trim(tags['DerivationDescription'])
   if string.sub(derivation, 1, string.len(DENOISED_MARK)) == DENOISED_MARK then
      return true
   end
   return origin ~= nil and Trim(origin['RemoteAet']) == NODE_AET
end

function OnStoredInstance(instanceId, tags, metadata, origin)
   if not ROUTED[Trim(tags['Modality'])] then
      return
   end
   if IsDenoised(tags, origin) then
      return
   end
   print('xraydenoise routing: sending ' .. instanceId .. ' to ' .. NODE)
   SendToModality(instanceId, NODE)
end
