'use strict';
// The upload form: files chosen or dropped, sent as multipart (scalar fields
// first, then the file parts) with XMLHttpRequest for upload progress, to
// CreateZipFromFiles (several files) or VideoTranscode (one video).

// The two tasks the form submits: the zip takes files, the transcode one video.
const KINDS = {
  zip: { url: '/api/tasks/create-zip-from-files', task: 'CreateZipFromFiles', multiple: true,
    verb: 'Create zip' },
  video: { url: '/api/tasks/video-transcode', task: 'VideoTranscode', multiple: false,
    verb: 'Transcode video' },
};
let selected = [];
let uploading = false;

const form = $('upload-form');
const input = $('file-input');
const drop = $('drop-zone');
const submitButton = $('submit-button');

const kindSelect = $('task-kind');
function kind() { return KINDS[kindSelect.value] || KINDS.zip; }

function setStatus(text) { $('form-status').textContent = text; }
function setError(text) { $('form-error').textContent = text; }

function addFiles(files) {
  const known = new Set(selected.map((f) => `${f.name}|${f.size}|${f.lastModified}`));
  for (const file of files) {
    const key = `${file.name}|${file.size}|${file.lastModified}`;
    if (!known.has(key)) { selected.push(file); known.add(key); }
  }
  // A video transcode takes one file: the last chosen.
  if (!kind().multiple) selected = selected.slice(-1);
  setError('');
  renderSelected();
}

function renderSelected() {
  const items = selected.map((file, index) => el('li', {},
    el('span', { class: 'name', text: file.name }),
    el('span', { class: 'muted', text: humanBytes(file.size) }),
    el('button', { type: 'button', class: 'secondary', 'aria-label': `Remove ${file.name}`, text: 'Remove',
      disabled: uploading, onclick: () => { selected.splice(index, 1); renderSelected(); } })));
  $('selected-files').replaceChildren(...items);
  submitButton.disabled = uploading || selected.length === 0;
  const total = selected.reduce((sum, file) => sum + file.size, 0);
  const { verb, multiple } = kind();
  submitButton.textContent = !selected.length ? verb
    : multiple ? `${verb} of ${selected.length} file${selected.length === 1 ? '' : 's'} (${humanBytes(total)})`
    : `${verb} (${humanBytes(total)})`;
  input.multiple = multiple;
  $('output-row').hidden = !multiple;
}

function showUpload(percent, text) {
  $('upload').hidden = percent === null;
  $('upload-progress').value = percent || 0;
  $('upload-text').textContent = text || '';
}

function problemOf(xhr) {
  try {
    const body = JSON.parse(xhr.responseText);
    return [body.title, body.detail].filter(Boolean).join(': ') || `HTTP ${xhr.status}`;
  } catch (_) {
    return `HTTP ${xhr.status} ${xhr.statusText}`;
  }
}

function upload() {
  if (uploading) return;
  if (!selected.length) { setError('Choose or drop at least one file first.'); return; }
  const chosen = kind();
  const name = chosen.multiple ? $('output-name').value.trim() : selected[0].name;
  const files = selected;
  const body = new FormData();
  if (name && chosen.multiple) body.append('outputFileName', name);
  body.append('listening', 'sse');
  for (const file of files) body.append('files', file, file.name);
  const total = files.reduce((sum, file) => sum + file.size, 0);
  const xhr = new XMLHttpRequest();
  xhr.open('POST', chosen.url);
  xhr.setRequestHeader('Accept', 'application/json');
  xhr.upload.addEventListener('progress', (event) => {
    const sent = event.lengthComputable ? event.loaded / event.total : 0;
    showUpload(Math.round(sent * 100), `Uploading ${humanBytes(Math.min(event.loaded, total))} of ${humanBytes(total)}`);
  });
  xhr.upload.addEventListener('load', () => showUpload(100, 'Uploaded; waiting for the server…'));
  xhr.addEventListener('load', () => {
    finish();
    if (xhr.status === 202 || xhr.status === 200) {
      let answer;
      try { answer = JSON.parse(xhr.responseText); } catch (_) { setError('The server sent an unreadable answer.'); return; }
      selected = [];
      renderSelected();
      form.reset();
      setStatus(`Task ${shortId(answer.taskId)} created (${files.length} file${files.length === 1 ? '' : 's'}).`);
      addSubmitted(answer, name || null, chosen.task);
    } else {
      setError(`Upload refused: ${problemOf(xhr)}`);
    }
  });
  xhr.addEventListener('error', () => { finish(); setError('Upload failed: the server cannot be reached.'); });
  xhr.addEventListener('abort', () => { finish(); setError('Upload aborted.'); });
  uploading = true;
  setError('');
  setStatus('');
  renderSelected();
  showUpload(0, `Uploading ${humanBytes(total)}…`);
  xhr.send(body);
}

function finish() {
  uploading = false;
  showUpload(null);
  renderSelected();
}

kindSelect.addEventListener('change', () => { if (!kind().multiple) selected = selected.slice(-1); renderSelected(); });
input.addEventListener('change', () => { addFiles(input.files); input.value = ''; });
form.addEventListener('submit', (event) => { event.preventDefault(); upload(); });
for (const type of ['dragenter', 'dragover']) {
  drop.addEventListener(type, (event) => { event.preventDefault(); drop.classList.add('over'); });
}
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (event) => {
  event.preventDefault();
  drop.classList.remove('over');
  if (event.dataTransfer) addFiles(event.dataTransfer.files);
});
// A file dropped beside the zone must not make the browser navigate away.
for (const type of ['dragover', 'drop']) window.addEventListener(type, (event) => event.preventDefault());
renderSelected();
