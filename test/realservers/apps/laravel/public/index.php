<?php
// A Laravel-shaped front controller for the real-servers suite (nginx + php-fpm): every request
// arrives here through nginx's try_files, as in Laravel. Routes: / (hello), POST /echo (length
// and sha256 of the request body), GET /bytes?n= (n random bytes, their sha256 in x-sha256),
// GET /stream?n=&ms= (n chunks, flushed ms apart), POST /livewire/update (Livewire's shape:
// save() answered at once, process() streamed); every Livewire call is appended to
// $SEEN_LOG, so the test knows what PHP saw.
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
$method = $_SERVER['REQUEST_METHOD'];

function stream_chunks(int $n, int $ms, string $prefix): void {
    // No buffering left between PHP and nginx: each chunk leaves when it is written.
    while (ob_get_level() > 0) ob_end_flush();
    header('Content-Type: text/plain');
    header('Cache-Control: no-store');
    for ($i = 0; $i < $n; $i++) {
        if ($i > 0) usleep($ms * 1000);
        echo "$prefix $i " . sprintf('%.3f', microtime(true)) . "\n";
        flush();
    }
}

if ($path === '/' && $method === 'GET') {
    echo 'hello from php-fpm ' . PHP_VERSION;
} elseif ($path === '/echo' && $method === 'POST') {
    $body = file_get_contents('php://input');
    header('Content-Type: application/json');
    echo json_encode(['bytes' => strlen($body), 'sha256' => hash('sha256', $body)]);
} elseif ($path === '/bytes' && $method === 'GET') {
    $n = (int)($_GET['n'] ?? 0);
    $body = $n > 0 ? random_bytes($n) : '';
    header('Content-Type: application/octet-stream');
    header('X-Sha256: ' . hash('sha256', $body));
    echo $body;
} elseif ($path === '/stream' && $method === 'GET') {
    stream_chunks((int)($_GET['n'] ?? 5), (int)($_GET['ms'] ?? 100), 'chunk');
} elseif ($path === '/livewire/update' && $method === 'POST') {
    $payload = json_decode(file_get_contents('php://input'), true);
    $calls = [];
    foreach ($payload['components'] ?? [] as $component) {
        foreach ($component['calls'] ?? [] as $call) $calls[] = $call['method'] ?? '';
    }
    $log = getenv('SEEN_LOG');
    if ($log !== false && $log !== '') {
        file_put_contents($log, implode(',', $calls) . ' ' . ($_SERVER['HTTP_FLY_REPLAY_SRC'] ?? '-') . "\n", FILE_APPEND | LOCK_EX);
    }
    if (in_array('process', $calls, true)) {
        header('X-Livewire-Stream: true');
        stream_chunks(5, 150, 'row');
    } else {
        header('Content-Type: application/json');
        echo json_encode(['saved' => true, 'calls' => $calls]);
    }
} else {
    http_response_code(404);
    echo 'not found';
}
